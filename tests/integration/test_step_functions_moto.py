"""The training workflow's state machine executed by moto's Step Functions interpreter (server mode).

moto cannot run SageMaker training jobs, so each ``createTrainingJob.sync`` state is replaced by what the
``.sync`` integration does: ``createTrainingJob`` with the state's own Parameters, then ``describeTrainingJob``
whose output goes through the state's own ResultSelector and ResultPath. Every other state - input defaults and
validation, reading the training plan and the evaluation report from S3, the Map over experts and its GPU/CPU
choice, the quality gate, create model / endpoint config / endpoint, the endpoint check, promoting CURRENT, the
SNS notices and the Fail states - runs as synthesized, intrinsic functions (States.UUID, States.Format,
States.Base64Encode) included. The jobs do not run, so each test puts what the prepare and evaluate jobs would
write (plan.json, evaluation.json) into S3 first. moto has no UpdateEndpoint: the fixture adds one that does what
SageMaker documents, either switching the endpoint to the new config or, for a failed update, leaving it
InService on its previous config with a FailureReason.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import pytest
import requests
from aws_cdk import App, Duration, Environment, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template
from moto.core.responses import ActionResult
from moto.sagemaker.responses import SageMakerResponse
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk as aws_sdk,
)

from signal_engine.workflow.plan import training_plan
from signal_engine.workflow.settings import training_settings
from step_functions.training_workflow import SYNC_TRAINING, TrainingWorkflow
from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT, moto_server

ACCOUNT, REGION = "123456789012", "us-east-1"
DATASETS, ARTIFACTS = "datasets-bucket", "artifacts-bucket"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:training-alarms"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sagemaker-training"
TRAINING_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/signal-engine-training:1"
CPU_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/signal-engine-training-cpu:1"
INFERENCE_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/signal-engine-inference:1"
ENDPOINT = "signal-engine-experts"
NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")  # SageMaker's rule for job, model and config names
ROLLBACK_REASON = "The primary container for production variant AllTraffic did not pass the ping health check."


def synthesized_definition() -> dict[str, Any]:
    app = App()
    stack = Stack(app, "MotoWorkflow", env=Environment(account=ACCOUNT, region=REGION))
    TrainingWorkflow(
        stack, "Training",
        datasets_bucket=s3.Bucket.from_bucket_name(stack, "Datasets", DATASETS),
        artifacts_bucket=s3.Bucket.from_bucket_name(stack, "Artifacts", ARTIFACTS),
        training_image=TRAINING_IMAGE, inference_image=INFERENCE_IMAGE, cpu_training_image=CPU_IMAGE,
        sagemaker_role=iam.Role.from_role_arn(stack, "Role", ROLE, mutable=False),
        alarm_topic=sns.Topic.from_topic_arn(stack, "Alarms", TOPIC), endpoint_name=ENDPOINT,
        endpoint_poll=Duration.seconds(1),
    )
    (machine,) = Template.from_stack(stack).find_resources("AWS::StepFunctions::StateMachine").values()
    return json.loads(_text(machine["Properties"]["DefinitionString"]))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        return str(value["Fn::Join"][0]).join(_text(p) for p in value["Fn::Join"][1])
    if value == {"Ref": "AWS::Partition"}:
        return "aws"
    raise AssertionError(f"unexpected reference in the definition: {value}")


def without_sync_jobs(definition: dict[str, Any]) -> dict[str, Any]:
    """Each createTrainingJob.sync state as createTrainingJob + describeTrainingJob (what .sync does).

    moto's context object has no ``State.RetryCount`` (AWS's does); job names use attempt 0 here.
    """
    result = json.loads(json.dumps(definition).replace("$$.State.RetryCount", "'0'"))

    def rewrite(states: dict[str, Any]) -> None:
        for name, state in list(states.items()):
            for key in ("ItemProcessor", "Iterator"):
                if key in state:
                    rewrite(state[key]["States"])
            if state.get("Resource") != SYNC_TRAINING:
                continue
            describe = {k: v for k, v in state.items() if k not in ("Parameters", "Resource", "Retry")}
            describe["Resource"] = "arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob"
            describe["Parameters"] = {"TrainingJobName.$": "$.created.name"}
            states[f"{name}Describe"] = describe
            created = {
                "Type": "Task", "Resource": "arn:aws:states:::aws-sdk:sagemaker:createTrainingJob",
                "Parameters": state["Parameters"], "ResultPath": "$.created", "Next": f"{name}Describe",
                "ResultSelector": {"arn.$": "$.TrainingJobArn"},
                **({"Catch": state["Catch"]} if "Catch" in state else {}),
            }
            name_expression = state["Parameters"]["TrainingJobName.$"]
            states[name] = {"Type": "Pass", "Parameters": {"name.$": name_expression}, "ResultPath": "$.created",
                            "Next": f"{name}Create"}
            states[f"{name}Create"] = {**created, "ResultPath": "$.createdArn"}
    rewrite(result["States"])
    return result


_eval_service_task = aws_sdk.StateTaskServiceAwsSdk._eval_service_task


def _reading_bodies(self: Any, env: Any, *args: Any, **kwargs: Any) -> None:
    """AWS's SDK integrations return s3:getObject's Body as text and timestamps as strings; moto's interpreter
    leaves boto's stream and datetime objects (which its execution output cannot serialize)."""
    _eval_service_task(self, env, *args, **kwargs)
    response = env.stack[-1]
    if isinstance(response, dict) and hasattr(response.get("Body"), "read"):
        response["Body"] = response["Body"].read().decode("utf-8")
    if isinstance(response, dict):
        env.stack[-1] = json.loads(json.dumps(response, default=str))


UPDATE = {"mode": "update"}


def _update_endpoint(self: SageMakerResponse) -> ActionResult:
    """UpdateEndpoint as SageMaker documents it (moto has none): the endpoint moves to the new config, or, when
    the update fails, rolls back and stays InService on its previous config with a FailureReason."""
    endpoint = self.sagemaker_backend.endpoints[self._get_param("EndpointName")]
    if UPDATE["mode"] == "rollback":
        endpoint.endpoint_status, endpoint.failure_reason = "InService", ROLLBACK_REASON  # type: ignore[assignment]
    else:
        endpoint.endpoint_config_name = self._get_param("EndpointConfigName")
        endpoint.endpoint_status, endpoint.failure_reason = "InService", None
    return ActionResult({"EndpointArn": endpoint.arn})


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in FAKE_AWS_ENVIRONMENT.items():
            mp.setenv(key, value)
        with moto_server() as endpoint:
            mp.setenv("MOTO_PORT", endpoint.rsplit(":", 1)[1])  # moto's interpreter calls back into this server
            mp.setattr(aws_sdk.StateTaskServiceAwsSdk, "_eval_service_task", _reading_bodies)
            mp.setattr(SageMakerResponse, "update_endpoint", _update_endpoint, raising=False)
            requests.post(f"{endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}},
                          timeout=10).raise_for_status()
            clients = {name: boto3.client(name, endpoint_url=endpoint, region_name=REGION)
                       for name in ("s3", "sns", "sqs", "stepfunctions", "sagemaker")}
            for bucket in (DATASETS, ARTIFACTS):
                clients["s3"].create_bucket(Bucket=bucket)
            topic = clients["sns"].create_topic(Name="training-alarms")["TopicArn"]
            queue = clients["sqs"].create_queue(QueueName="alarms")["QueueUrl"]
            queue_arn = clients["sqs"].get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
            clients["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"],
                                     Attributes={"RawMessageDelivery": "true"})
            machine = clients["stepfunctions"].create_state_machine(
                name="training", definition=json.dumps(without_sync_jobs(synthesized_definition())),
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/states")["stateMachineArn"]
            yield {**clients, "machine": machine, "queue": queue}


def prepared_plan(execution_input: dict[str, Any]) -> dict[str, Any]:
    """The plan the prepare job writes for this input (the domain's training_plan on the input's config)."""
    config, _ = training_settings(execution_input.get("profile", "quick"),
                                  execution_input.get("hyperparameters", {}), source="hyperparameters")
    return training_plan(execution_input.get("experts", ["trend", "levels", "volatility"]), config, [False])


def run(aws: dict[str, Any], name: str, execution_input: dict[str, Any],
        report: dict[str, Any] | None, plan: dict[str, Any] | None = None) -> dict[str, Any]:
    plan = plan or prepared_plan(execution_input)
    aws["s3"].put_object(Bucket=ARTIFACTS, Key=f"runs/{name}/plan.json", Body=json.dumps(plan).encode())
    if report is not None:
        aws["s3"].put_object(Bucket=ARTIFACTS, Key=f"runs/{name}/evaluation.json", Body=json.dumps(report).encode())
    arn = aws["stepfunctions"].start_execution(stateMachineArn=aws["machine"], name=name,
                                               input=json.dumps(execution_input))["executionArn"]
    for _ in range(600):
        described: dict[str, Any] = aws["stepfunctions"].describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError(f"execution {name} still running after 600 polls")


def run_id(aws: dict[str, Any], execution: dict[str, Any]) -> str:
    """The run id (States.UUID()) that MergeInput gave the execution: the middle of its SageMaker names."""
    history = aws["stepfunctions"].get_execution_history(executionArn=execution["executionArn"],
                                                         maxResults=1000)["events"]
    (merged,) = [e["stateExitedEventDetails"] for e in history
                 if e.get("stateExitedEventDetails", {}).get("name") == "MergeInput"]
    return str(json.loads(merged["output"])["ids"]["run"])


def entered_states(aws: dict[str, Any], execution: dict[str, Any]) -> list[str]:
    history = aws["stepfunctions"].get_execution_history(executionArn=execution["executionArn"],
                                                         maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]


def job(aws: dict[str, Any], run: str, suffix: str) -> dict[str, Any]:
    described: dict[str, Any] = aws["sagemaker"].describe_training_job(TrainingJobName=f"se-{run}-{suffix}-0")
    return described


def tags(aws: dict[str, Any], arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in aws["sagemaker"].list_tags(ResourceArn=arn)["Tags"]}


def current(aws: dict[str, Any]) -> bytes:
    body: bytes = aws["s3"].get_object(Bucket=ARTIFACTS, Key="models/CURRENT")["Body"].read()
    return body


def notices(aws: dict[str, Any]) -> list[str]:
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        aws["sqs"].delete_message(QueueUrl=aws["queue"], ReceiptHandle=message["ReceiptHandle"])
    return [m["Body"] for m in messages]


def report(version: str, passed: bool, symbols: Sequence[str]) -> dict[str, Any]:
    """The evaluate job's report: the first symbol passes when ``passed`` (promote), every other is withheld."""
    served = [symbols[0]] if passed else []
    checks = [{"symbol": s, "name": "confidence_ece", "value": 0.04 if s in served else 0.2, "threshold": 0.1,
               "passed": s in served} for s in symbols]
    return {"version": version, "passed": passed, "bundle": f"s3://{ARTIFACTS}/models/{version}/",
            "served_symbols": served,
            "withheld": {s: "failed confidence_ece 0.2 (needs <= 0.1)" for s in symbols if s not in served},
            "checks": checks}


def test_a_passing_run_trains_deploys_and_promotes(aws: dict[str, Any]) -> None:
    version = "20261123T150102Z-3f9a1c2e"
    execution = run(aws, "run-pass", {"symbols": ["SPX", "IXIC"], "start": "2005-01-01",
                                      "hyperparameters": {"trend": {"n_estimators": 50}}},
                    report(version, True, ["SPX", "IXIC"]))
    assert execution["status"] == "SUCCEEDED", execution
    sagemaker, rid = aws["sagemaker"], run_id(aws, execution)
    prepare = job(aws, rid, "prepare")
    hyperparameters = prepare["HyperParameters"]
    assert hyperparameters["sagemaker_program"] == "prepare.py"
    assert json.loads(hyperparameters["symbols"]) == ["SPX", "IXIC"]
    assert hyperparameters["start"] == "2005-01-01" and hyperparameters["end"] == ""
    assert json.loads(hyperparameters["config"]) == {"trend": {"n_estimators": 50}}
    assert hyperparameters["plan"] == f"s3://{ARTIFACTS}/runs/run-pass/plan.json"
    assert json.loads(hyperparameters["experts"]) == ["trend", "levels", "volatility"]
    assert prepare["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{DATASETS}/bars/1d/"
    assert prepare["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert tags(aws, prepare["TrainingJobArn"])["signal-engine:execution"] == "run-pass"
    dataset_model = prepare["ModelArtifacts"]["S3ModelArtifacts"]
    for expert in ("trend", "levels", "volatility"):
        expert_job = job(aws, rid, expert)
        assert expert_job["HyperParameters"]["expert"] == expert
        assert expert_job["HyperParameters"]["tune"] == "false", "tuning is off unless the input asks for it"
        assert expert_job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == dataset_model
        assert expert_job["OutputDataConfig"]["S3OutputPath"] == f"s3://{ARTIFACTS}/runs/run-pass/experts"
    evaluate = job(aws, rid, "evaluate")
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in evaluate["InputDataConfig"]}
    gate = job(aws, rid, "train-gate")
    assert [c["ChannelName"] for c in gate["InputDataConfig"]] == ["dataset", "experts"]  # experts: trend_pooled
    assert gate["HyperParameters"]["tune"] == "false", "its walk-forward is tuned only when the input asks for it"
    entered = set(entered_states(aws, execution))
    assert {"TrainGateAccelerator", "TrainGateCpuJob", "EvaluateAccelerator", "EvaluateCpuJob"} <= entered
    assert not {"TrainGateGpuJob", "EvaluateGpuJob"} & entered
    assert channels == {"dataset": dataset_model, "gate": gate["ModelArtifacts"]["S3ModelArtifacts"],
                        "experts": f"s3://{ARTIFACTS}/runs/run-pass/experts/"}
    assert evaluate["HyperParameters"]["report"] == f"s3://{ARTIFACTS}/runs/run-pass/evaluation.json"
    name = f"signal-engine-{rid}"
    model = sagemaker.describe_model(ModelName=name)
    assert model["PrimaryContainer"]["Image"] == INFERENCE_IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == evaluate["ModelArtifacts"]["S3ModelArtifacts"]
    assert model["PrimaryContainer"]["Environment"] == {"SIGNAL_ENGINE_MODEL_VERSION": version}
    assert tags(aws, model["ModelArn"]) == {"signal-engine:execution": "run-pass", "signal-engine:run": rid,
                                            "signal-engine:endpoint": ENDPOINT}
    config = sagemaker.describe_endpoint_config(EndpointConfigName=name)
    assert tags(aws, config["EndpointConfigArn"])["signal-engine:endpoint"] == ENDPOINT
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == name
    assert current(aws).decode() == version
    assert json.loads(execution["output"])["publish"] == {"name": name, "version": version}
    assert notices(aws) == []


def test_a_run_on_a_fanned_out_backtest_reads_its_batches_instead_of_walking_forward(aws: dict[str, Any]) -> None:
    """``walk_forward_run`` names a backtest fan-out execution: the gate and evaluate jobs run as their
    ``FromBacktest`` states, each with a ``walkforward`` channel on that run's batches; without it (the test
    above) they have no such channel."""
    version = "20261204T120000Z-0000f00d"
    execution = run(aws, "run-from-backtest", {"symbols": ["SPX", "IXIC"], "walk_forward_run": "backtest-1"},
                    report(version, True, ["SPX", "IXIC"]))
    assert execution["status"] == "SUCCEEDED", execution
    entered = entered_states(aws, execution)
    assert {"TrainGateWalksForward", "TrainGateFromBacktestCpuJob", "EvaluateWalksForward",
            "EvaluateFromBacktestCpuJob"} <= set(entered)
    assert not {"TrainGateCpuJob", "EvaluateCpuJob"} & set(entered)
    rid = run_id(aws, execution)
    batches = f"s3://{ARTIFACTS}/backtests/backtest-1/batches/"
    for suffix in ("train-gate", "evaluate"):
        channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                    for c in job(aws, rid, suffix)["InputDataConfig"]}
        assert channels["walkforward"] == batches, suffix
    assert current(aws).decode() == version
    notices(aws)


def test_a_run_with_the_news_slot_prepares_the_dataset_with_the_exported_news(aws: dict[str, Any]) -> None:
    """``moe.news`` in the hyperparameters: the prepare job runs as ``PrepareDatasetWithNews`` with a ``news``
    channel on the bars export's news/ prefix (or the input's ``news_prefix``); the later jobs read the news scores
    from its dataset, so their channels are those of a run without the slot. A run without it (the first test, and
    ``"news": false`` here) has no news channel."""
    slot = {"moe": {"news": True}, "news": {"enabled": True}}
    execution = run(aws, "run-news", {"symbols": ["SPX"], "hyperparameters": slot},
                    report("20261205T060000Z-0000beef", True, ["SPX"]))
    assert execution["status"] == "SUCCEEDED", execution
    entered = entered_states(aws, execution)
    assert {"PrepareDatasetReadsNews", "PrepareDatasetWithNews"} <= set(entered) and "PrepareDataset" not in entered
    rid = run_id(aws, execution)
    prepare = job(aws, rid, "prepare")
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in prepare["InputDataConfig"]}
    assert channels == {"raw": f"s3://{DATASETS}/bars/1d/", "news": f"s3://{DATASETS}/news/"}
    assert json.loads(prepare["HyperParameters"]["config"]) == slot
    dataset_model = prepare["ModelArtifacts"]["S3ModelArtifacts"]
    gate = job(aws, rid, "train-gate")
    assert [c["ChannelName"] for c in gate["InputDataConfig"]] == ["dataset", "experts"]
    assert gate["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == dataset_model
    notices(aws)

    moved = run(aws, "run-news-prefix", {"symbols": ["SPX"], "hyperparameters": slot, "news_prefix": "news/v2"},
                report("20261205T060100Z-0000beef", True, ["SPX"]))
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in job(aws, run_id(aws, moved), "prepare")["InputDataConfig"]}
    assert channels["news"] == f"s3://{DATASETS}/news/v2/"
    notices(aws)

    off = run(aws, "run-news-off", {"symbols": ["SPX"], "hyperparameters": {"moe": {"news": False}}},
              report("20261205T060200Z-0000beef", True, ["SPX"]))
    assert {"PrepareDatasetReadsNews", "PrepareDataset"} <= set(entered_states(aws, off))
    assert [c["ChannelName"] for c in job(aws, run_id(aws, off), "prepare")["InputDataConfig"]] == ["raw"]
    notices(aws)


def test_the_default_config_trains_every_job_on_cpu_instances_with_the_cpu_image(aws: dict[str, Any]) -> None:
    """The plan the prepare job writes for the defaults (LightGBM, swing levels, GARCH blend, softmax gate) names cpu
    for every job, the gate and evaluate jobs too; so does the news slot's prepare job."""
    execution = run(aws, "run-cpu", {"symbols": ["SPX"], "hyperparameters": {"moe": {"news": True}}},
                    report("20261123T160000Z-0000cafe", False, ["SPX"]))
    assert execution["status"] == "FAILED" and execution["error"] == "QualityGateFailed"
    rid = run_id(aws, execution)
    for name in ("prepare", "trend", "levels", "volatility", "train-gate", "evaluate"):
        described = job(aws, rid, name)
        assert described["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge", name
        assert described["AlgorithmSpecification"]["TrainingImage"] == CPU_IMAGE, name
    assert "PrepareDatasetWithNews" in entered_states(aws, execution)
    notices(aws)


def test_an_mlp_gate_trains_the_gate_and_evaluate_jobs_on_gpu_instances_with_the_tensorflow_image(
        aws: dict[str, Any]) -> None:
    """``moe.gate: mlp`` (a Keras network): the plan the prepare job writes names gpu for the gate job, which fits
    it, and for evaluate, which fits it again for the book's timeframe models; the experts stay on CPU."""
    execution = run(aws, "run-mlp", {"symbols": ["SPX"], "gpu_instance_type": "ml.g6.xlarge",
                                     "hyperparameters": {"moe": {"gate": "mlp"}}},
                    report("20261123T161500Z-0000cafe", False, ["SPX"]))
    assert execution["status"] == "FAILED" and execution["error"] == "QualityGateFailed"
    rid = run_id(aws, execution)
    for name in ("train-gate", "evaluate"):
        described = job(aws, rid, name)
        assert described["ResourceConfig"]["InstanceType"] == "ml.g6.xlarge", name
        assert described["AlgorithmSpecification"]["TrainingImage"] == TRAINING_IMAGE, name
    for name in ("prepare", "trend", "levels", "volatility"):
        assert job(aws, rid, name)["AlgorithmSpecification"]["TrainingImage"] == CPU_IMAGE, name
    notices(aws)


def test_a_plan_without_the_gate_jobs_accelerator_fails_with_a_notice(aws: dict[str, Any]) -> None:
    """A plan that names no accelerator for the gate job (one of an older prepare job): no job is started on a
    guess; the run fails through NotifyFailure, saying so."""
    plan = {"schema_version": 1, "experts": [{"expert": e, "accelerator": "cpu"}
                                             for e in ("trend", "levels", "volatility")]}
    execution = run(aws, "run-old-plan", {"symbols": ["SPX"]}, report("20261123T162000Z-0000cafe", True, ["SPX"]),
                    plan=plan)
    assert execution["status"] == "FAILED" and execution["error"] == "TrainingFailed"
    assert "TrainGateUnknownAccelerator" in entered_states(aws, execution)
    (notice,) = notices(aws)
    assert "UnknownAccelerator: the training plan names an accelerator other than gpu or cpu for train_gate" in notice


def test_a_tuned_run_sends_tune_to_every_expert_job_and_the_gate_job(aws: dict[str, Any]) -> None:
    """``"tune": true``: each expert job gets hyperparameter tune "true" (the trend job then tunes its LightGBM
    settings and keeps the studies in its model.tar.gz; tests/integration/test_sagemaker_toolkit.py runs that job),
    and so does the train_gate job (every refit of the walk-forward the quality gate judges is tuned the same way),
    with the 'tuning' section's trials in the config object every job gets."""
    execution = run(aws, "run-tuned", {"symbols": ["SPX"], "tune": True,
                                       "hyperparameters": {"tuning": {"trials": 10}}},
                    report("20261123T163000Z-0000d00d", False, ["SPX"]))
    assert execution["status"] == "FAILED" and execution["error"] == "QualityGateFailed"
    rid = run_id(aws, execution)
    for expert in ("trend", "levels", "volatility", "train-gate"):
        hyperparameters = job(aws, rid, expert)["HyperParameters"]
        assert hyperparameters["tune"] == "true", expert
        assert json.loads(hyperparameters["config"]) == {"tuning": {"trials": 10}}
    assert "tune" not in job(aws, rid, "prepare")["HyperParameters"]
    notices(aws)


def test_a_keras_expert_trains_on_a_gpu_instance_with_the_tensorflow_image(aws: dict[str, Any]) -> None:
    """The plan the prepare job writes when the trend expert's model is a Keras model (see test_workflow_plan)."""
    plan = {"schema_version": 2, "experts": [{"expert": "trend", "accelerator": "gpu"},
                                             {"expert": "levels", "accelerator": "cpu"},
                                             {"expert": "volatility", "accelerator": "cpu"}],
            "steps": {"train_gate": {"accelerator": "cpu"}, "evaluate": {"accelerator": "cpu"}}}
    execution = run(aws, "run-gpu", {"symbols": ["SPX"], "gpu_instance_type": "ml.g6.xlarge"},
                    report("20261123T170000Z-0000beef", False, ["SPX"]), plan=plan)
    assert execution["error"] == "QualityGateFailed"
    rid = run_id(aws, execution)
    trend = job(aws, rid, "trend")
    assert trend["ResourceConfig"]["InstanceType"] == "ml.g6.xlarge"
    assert trend["AlgorithmSpecification"]["TrainingImage"] == TRAINING_IMAGE
    for expert in ("levels", "volatility"):
        assert job(aws, rid, expert)["AlgorithmSpecification"]["TrainingImage"] == CPU_IMAGE
    notices(aws)


def test_the_pooled_trend_expert_trains_on_the_gpu_and_the_gate_reads_the_experts_outputs(
        aws: dict[str, Any]) -> None:
    """``moe.experts.trend: trend_pooled`` in the run's config: the plan the prepare job writes for it (the domain's
    training_plan) sends the trend job to the GPU instance with the TensorFlow image and the others to CPU, and the
    gate job gets the experts' outputs (the trend job's pooled walk-forward) as its experts channel."""
    config = {"moe": {"experts": {"trend": "trend_pooled"}}}
    execution = run(aws, "run-pooled", {"symbols": ["SPX", "IXIC"], "gpu_instance_type": "ml.g6.xlarge",
                                        "hyperparameters": config},
                    report("20261123T171500Z-0000f00d", False, ["SPX", "IXIC"]))
    assert execution["error"] == "QualityGateFailed"
    rid = run_id(aws, execution)
    trend = job(aws, rid, "trend")
    assert trend["ResourceConfig"]["InstanceType"] == "ml.g6.xlarge"
    assert trend["AlgorithmSpecification"]["TrainingImage"] == TRAINING_IMAGE
    assert json.loads(trend["HyperParameters"]["config"]) == config
    for expert in ("levels", "volatility"):
        assert job(aws, rid, expert)["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge", expert
        assert job(aws, rid, expert)["AlgorithmSpecification"]["TrainingImage"] == CPU_IMAGE, expert
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in job(aws, rid, "train-gate")["InputDataConfig"]}
    assert channels["experts"] == f"s3://{ARTIFACTS}/runs/run-pooled/experts/"
    notices(aws)


def test_names_stay_valid_for_a_long_execution_name_with_odd_characters(aws: dict[str, Any]) -> None:
    name = ("Nightly_retrain.SPX-IXIC'(manual)!_" + "x" * 80)[:80]
    execution = run(aws, name, {"symbols": ["SPX"]}, report("20261123T180000Z-00000abc", True, ["SPX"]))
    assert execution["status"] == "SUCCEEDED", execution
    rid = run_id(aws, execution)
    sagemaker = aws["sagemaker"]
    jobs = [j for j in sagemaker.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
            if j["TrainingJobName"].startswith(f"se-{rid}-")]
    model, config = f"signal-engine-{rid}", f"signal-engine-{rid}"
    names = [j["TrainingJobName"] for j in jobs] + [model, config]
    assert len(jobs) == 6 and all(NAME.fullmatch(n) and len(n) <= 63 for n in names), names
    encoded = "base64:" + base64.b64encode(name.encode()).decode()
    assert re.fullmatch(r"[\w.:/=+\-@ ]*", encoded)  # SageMaker's tag value characters
    for arn in [j["TrainingJobArn"] for j in jobs] + [sagemaker.describe_model(ModelName=model)["ModelArn"]]:
        assert tags(aws, arn)["signal-engine:execution"] == encoded
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == config
    notices(aws)


def test_a_failed_quality_gate_keeps_current_and_says_why(aws: dict[str, Any]) -> None:
    before = current(aws)
    execution = run(aws, "run-fail", {"symbols": ["GOOG"]}, report("20261124T000000Z-00000000", False, ["GOOG"]))
    assert execution["status"] == "FAILED" and execution["error"] == "QualityGateFailed"
    assert current(aws) == before
    (notice,) = notices(aws)
    assert "20261124T000000Z-00000000" in notice and "confidence_ece" in notice
    with pytest.raises(aws["sagemaker"].exceptions.ClientError):
        aws["sagemaker"].describe_model(ModelName=f"signal-engine-{run_id(aws, execution)}")


def test_a_failing_task_notifies_with_the_cause_and_fails(aws: dict[str, Any]) -> None:
    execution = run(aws, "run-broken", {"symbols": ["SPX"]}, report=None)  # no evaluation report in S3
    assert execution["status"] == "FAILED"
    assert "NoSuchKey" in execution["error"] + execution.get("cause", "")
    (notice,) = notices(aws)
    assert notice.startswith("Training run run-broken failed:") and "NoSuchKey" in notice


def test_input_without_symbols_is_refused_before_any_job(aws: dict[str, Any]) -> None:
    before = len(aws["sagemaker"].list_training_jobs(MaxResults=100)["TrainingJobSummaries"])
    execution = run(aws, "run-empty", {"symbols": []}, report=None)
    assert execution["status"] == "FAILED" and execution["error"] == "InvalidInput"
    assert "symbols" in execution["cause"]
    assert len(aws["sagemaker"].list_training_jobs(MaxResults=100)["TrainingJobSummaries"]) == before


def test_a_second_deployment_updates_the_existing_endpoint(aws: dict[str, Any]) -> None:
    version = "20261125T000000Z-11111111"
    execution = run(aws, "run-again", {"symbols": ["SPX"]}, report(version, True, ["SPX"]))
    assert execution["status"] == "SUCCEEDED", execution
    entered = entered_states(aws, execution)
    assert "UpdateEndpoint" in entered and "CreateEndpoint" not in entered
    assert entered.index("CheckEndpoint") < entered.index("EndpointExists") < entered.index("UpdateEndpoint")
    name = f"signal-engine-{run_id(aws, execution)}"
    assert aws["sagemaker"].describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == name
    assert current(aws).decode() == version
    assert notices(aws) == []


def test_a_rolled_back_update_is_notified_and_not_promoted(aws: dict[str, Any]) -> None:
    serving = aws["sagemaker"].describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    before = current(aws)
    UPDATE["mode"] = "rollback"
    try:
        execution = run(aws, "run-rollback", {"symbols": ["SPX"]}, report("20261126T000000Z-22222222", True, ["SPX"]))
    finally:
        UPDATE["mode"] = "update"
    assert execution["status"] == "FAILED" and execution["error"] == "TrainingFailed"
    assert "EndpointNotDeployed" in execution["cause"] and ROLLBACK_REASON in execution["cause"]
    assert "PromoteVersion" not in entered_states(aws, execution)
    assert current(aws) == before
    assert aws["sagemaker"].describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == serving
    (notice,) = notices(aws)
    assert "20261126T000000Z-22222222 is not promoted" in notice and ROLLBACK_REASON in notice
    assert serving in notice
