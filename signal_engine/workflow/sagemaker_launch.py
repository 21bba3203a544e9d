"""Start one training job by hand (``signal-engine train --on sagemaker``) with the SageMaker Python SDK v3.

The SDK is an optional extra (``pip install 'signal-engine[sagemaker]'``), imported here only, when a job is
started; the Lambdas and the rest of the package never import it. The job is the same script-mode entry point
the Step Functions workflow runs (``sagemaker_program`` picks it inside the training image).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from signal_engine.errors import ConfigError, SignalEngineError
from signal_engine.workflow.steps import STEPS

INSTALL_HINT = "pip install 'signal-engine[sagemaker]'"
ENTRIES = tuple(s.entry for s in STEPS if s.entry)


class SageMakerSDKMissing(SignalEngineError):
    """The SageMaker Python SDK v3 is not installed."""


@dataclass(frozen=True)
class JobRequest:
    """One training job: which entry point, on what, where its model goes, with which hyperparameters."""

    entry: str
    image_uri: str
    role_arn: str
    output_path: str
    channels: dict[str, str]
    instance_type: str = "ml.g5.xlarge"
    hyperparameters: dict[str, str] = field(default_factory=dict)
    max_runtime_seconds: int = 4 * 3600
    base_job_name: str = ""

    def __post_init__(self) -> None:
        if self.entry not in ENTRIES:
            raise ConfigError(f"--entry: '{self.entry}' is not a training entry point; expected one of {list(ENTRIES)}")
        if not self.output_path.startswith("s3://"):
            raise ConfigError(f"--output: '{self.output_path}' is not an S3 URI; expected s3://bucket/prefix")
        for name, uri in self.channels.items():
            if not re.fullmatch(r"[A-Za-z0-9\.\-_]{1,64}", name) or not uri.startswith("s3://"):
                raise ConfigError(f"--channel: '{name}={uri}'; expected NAME=s3://bucket/key")
        if not self.role_arn.startswith("arn:"):
            raise ConfigError(f"--role: '{self.role_arn}' is not a role ARN; "
                              "expected arn:aws:iam::<account>:role/<name>")
        if not self.instance_type.startswith("ml."):
            raise ConfigError(f"--instance-type: '{self.instance_type}'; "
                              "expected a SageMaker type such as ml.g5.xlarge")

    def all_hyperparameters(self) -> dict[str, str]:
        return {"sagemaker_program": f"{self.entry}.py", "sagemaker_submit_directory": "/opt/ml/code",
                **self.hyperparameters}


def sagemaker_sdk() -> dict[str, Any]:
    """The SDK v3 classes used here; a clear error naming the extra when the SDK is absent."""
    try:
        from sagemaker.train import ModelTrainer
        from sagemaker.train.configs import Compute, InputData, OutputDataConfig, StoppingCondition
    except ImportError as exc:
        raise SageMakerSDKMissing(
            f"starting a SageMaker training job needs the SageMaker Python SDK v3 ({exc.name or 'sagemaker'} is not "
            f"installed); install it with: {INSTALL_HINT}") from None
    return {"ModelTrainer": ModelTrainer, "Compute": Compute, "InputData": InputData,
            "OutputDataConfig": OutputDataConfig, "StoppingCondition": StoppingCondition}


def start_training_job(request: JobRequest, *, session: Any = None, wait: bool = False,
                       sdk: Mapping[str, Any] | None = None) -> str:
    """Start the job (``ModelTrainer.train``) and return its name; ``session`` is a ``sagemaker`` Session."""
    classes = dict(sdk) if sdk is not None else sagemaker_sdk()
    trainer = classes["ModelTrainer"](
        training_image=request.image_uri,
        role=request.role_arn,
        base_job_name=request.base_job_name or f"se-{request.entry.replace('_', '-')}",
        compute=classes["Compute"](instance_type=request.instance_type, instance_count=1, volume_size_in_gb=30),
        stopping_condition=classes["StoppingCondition"](max_runtime_in_seconds=request.max_runtime_seconds),
        output_data_config=classes["OutputDataConfig"](s3_output_path=request.output_path),
        hyperparameters=request.all_hyperparameters(),
        sagemaker_session=session,
    )
    inputs = [classes["InputData"](channel_name=name, data_source=uri) for name, uri in request.channels.items()]
    trainer.train(input_data_config=inputs, wait=wait, logs=wait)
    job = getattr(trainer, "_latest_training_job", None)
    return str(getattr(job, "training_job_name", "") or trainer.base_job_name)
