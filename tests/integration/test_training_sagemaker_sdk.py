"""`signal-engine train --on sagemaker` with the real SageMaker Python SDK v3 (ModelTrainer) against moto.

The SDK is an optional extra (``pip install 'signal-engine[sagemaker]'``: about 900 MB with its mlflow
dependency), so `make setup` does not install it and this test skips without it; the launcher's behaviour with the
SDK absent is tested in tests/unit/test_workflow.py. The session is a real ``sagemaker.train.Session`` whose boto3
calls go to moto in server mode; IAM role validation is switched off (moto has no iam:SimulatePrincipalPolicy).
"""

from __future__ import annotations

import pytest

sagemaker_train = pytest.importorskip(
    "sagemaker.train", reason="the SageMaker SDK v3 is not installed (pip install 'signal-engine[sagemaker]')")

import boto3  # noqa: E402

from signal_engine.workflow.sagemaker_launch import JobRequest, start_training_job  # noqa: E402
from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT, moto_server  # noqa: E402


def test_model_trainer_starts_the_entry_point_job(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAKE_AWS_ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        boto3.client("s3").create_bucket(Bucket="artifacts")
        session = sagemaker_train.Session(boto_session=boto3.Session(region_name="us-east-1"),
                                          default_bucket="artifacts")
        request = JobRequest(entry="train_expert", image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/t:1",
                             role_arn="arn:aws:iam::123456789012:role/training", output_path="s3://artifacts/runs",
                             channels={"dataset": "s3://artifacts/runs/x/model.tar.gz"},
                             hyperparameters={"expert": "trend", "symbols": '["SPX"]'})
        name = start_training_job(request, session=session)
        job = boto3.client("sagemaker").describe_training_job(TrainingJobName=name)
    assert name.startswith("se-train-expert")
    assert job["HyperParameters"] == {"sagemaker_program": "train_expert.py",
                                      "sagemaker_submit_directory": "/opt/ml/code", "expert": "trend",
                                      "symbols": '["SPX"]'}
    assert job["AlgorithmSpecification"]["TrainingImage"].endswith("/t:1")
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    (channel,) = job["InputDataConfig"]
    assert channel["ChannelName"] == "dataset"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == "s3://artifacts/runs/x/model.tar.gz"
