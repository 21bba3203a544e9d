"""The ``BacktestFanOut`` state machine as synthesized, executed by moto's Step Functions interpreter (server mode).

What moto cannot run is run here, as AWS documents it:

- **Lambda** (moto runs functions in Docker only): each function's handler, read from the synthesized image
  config (``ImageConfig.Command``), is called in process with the event Step Functions sends; an exception
  answers as Lambda's runtime does, ``X-Amz-Function-Error: Unhandled`` with ``{"errorType", "errorMessage"}``.
  The functions' environment is the synthesized one; invocations run one at a time (each has its own process
  in AWS). ``faults`` makes chosen invocations fail as a timed-out
  function does (``Sandbox.Timedout``), before the handler runs.
- **SageMaker Processing** (moto records jobs but runs none; nor ``.sync``): each ``createProcessingJob.sync``
  state becomes ``createProcessingJob`` then ``describeProcessingJob`` through the state's own ResultSelector,
  ResultPath, retries and catches; the job runs when it is created, as the container contract says: every
  ``ProcessingInput`` downloaded from S3 into its ``LocalPath``, the entrypoint run (``/opt/ml/code`` is the
  repository's ``sagemaker_jobs/``, in a subprocess), every ``ProcessingOutput`` uploaded from its ``LocalPath``;
  the paths under ``/opt/ml/processing`` live in a temporary folder. A job that exits non-zero fails its
  ``createProcessingJob`` call (where ``.sync`` would fail the state), so the state's retries and catches apply.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from aws_cdk import App, Duration, Environment, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template
from moto.awslambda.models import LambdaFunction
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.responses import SageMakerResponse

from step_functions.backtest_fanout import PROCESSING_ROOT, SYNC_PROCESSING, BacktestFanOut
from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT, moto_server
from tests.handlers.conftest import FakeLambdaContext

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT, REGION = "123456789012", "us-east-1"
DATASETS, ARTIFACTS = "datasets-bucket", "artifacts-bucket"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:backtest-alarms"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sagemaker"
PROCESSING_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/signal-engine-training-cpu:1"
CODE_DIR = "/opt/ml/code/"


@dataclass(frozen=True)
class Function:
    """A synthesized Lambda function: its name in moto, handler and environment."""

    name: str
    handler: str
    environment: dict[str, str]


def synthesized() -> tuple[dict[str, Any], list[Function]]:
    """The state machine's definition (function ARNs resolved to moto's) and its functions."""
    app = App()
    stack = Stack(app, "MotoFanOut", env=Environment(account=ACCOUNT, region=REGION))
    BacktestFanOut(
        stack, "FanOut",
        datasets_bucket=s3.Bucket.from_bucket_name(stack, "Datasets", DATASETS),
        artifacts_bucket=s3.Bucket.from_bucket_name(stack, "Artifacts", ARTIFACTS),
        alarm_topic=sns.Topic.from_topic_arn(stack, "Alarms", TOPIC),
        processing_image=PROCESSING_IMAGE,
        sagemaker_role=iam.Role.from_role_arn(stack, "Role", ROLE, mutable=False),
        data_policies=[], retry_interval=Duration.seconds(1),
    )
    template = Template.from_stack(stack)
    functions = [
        Function(logical_id, resource["Properties"]["ImageConfig"]["Command"][0],
                 resource["Properties"]["Environment"]["Variables"])
        for logical_id, resource in template.find_resources("AWS::Lambda::Function").items()
    ]
    (machine,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    return json.loads(_text(machine["Properties"]["DefinitionString"])), functions


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        return str(value["Fn::Join"][0]).join(_text(p) for p in value["Fn::Join"][1])
    if value == {"Ref": "AWS::Partition"}:
        return "aws"
    if "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Arn":
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{value['Fn::GetAtt'][0]}"
    raise AssertionError(f"unexpected reference in the definition: {value}")


def without_sync_processing(definition: dict[str, Any]) -> dict[str, Any]:
    """Each createProcessingJob.sync state as createProcessingJob + describeProcessingJob (moto's context object
    has no ``State.RetryCount``: job names use attempt 0)."""
    result = json.loads(json.dumps(definition).replace("$$.State.RetryCount", "'0'"))

    def rewrite(states: dict[str, Any]) -> None:
        for name, state in list(states.items()):
            if "ItemProcessor" in state:
                rewrite(state["ItemProcessor"]["States"])
            if state.get("Resource") != SYNC_PROCESSING:
                continue
            describe = {k: v for k, v in state.items() if k not in ("Parameters", "Resource")}
            describe["Resource"] = "arn:aws:states:::aws-sdk:sagemaker:describeProcessingJob"
            describe["Parameters"] = {"ProcessingJobName.$": "$.created.ProcessingJobName"}
            describe["ResultSelector"] = {**state["ResultSelector"], "status.$": "$.ProcessingJobStatus"}
            states[f"{name}Describe"] = describe
            states[name] = {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:sagemaker:createProcessingJob",
                            "Parameters": state["Parameters"], "Next": f"{name}Describe",
                            "ResultSelector": {"ProcessingJobName.$": "States.ArrayGetItem(States.StringSplit("
                                               "$.ProcessingJobArn, '/'), 1)"},
                            "ResultPath": "$.created",
                            **{key: state[key] for key in ("Retry", "Catch") if key in state}}
    rewrite(result["States"])
    return result


@dataclass
class Invocations:
    """Every Lambda invocation (function name, event) and the faults to inject: (handler, predicate on the
    event, how many invocations fail)."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    faults: list[list[Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, handler: str, when: Callable[[dict[str, Any]], bool], times: int) -> None:
        self.faults.append([handler, when, times])

    def reset(self) -> None:
        self.calls.clear()
        self.faults.clear()

    def _faulted(self, handler: str, event: dict[str, Any]) -> bool:
        with self.lock:
            self.calls.append((handler, event))
            for fault in self.faults:
                if fault[0] == handler and fault[1](event) and fault[2] > 0:
                    fault[2] -= 1
                    return True
        return False


INVOCATIONS = Invocations()
# Each Lambda invocation has a process of its own; in this process they take turns, so that process-wide state
# (the BLAS thread limits the walk-forward sets, os.environ) is never shared between two running at once.
SANDBOX = threading.Lock()


def _invoke_in_process(self: LambdaFunction, body: str, request_headers: Any, response_headers: Any) -> bytes:
    """Lambda's invoke, running the function's handler in this process."""
    event = json.loads(body) if body else {}
    handler = str(self.handler)
    if INVOCATIONS._faulted(handler, event):
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps({"errorType": "Sandbox.Timedout",
                           "errorMessage": "Task timed out after 900.00 seconds"}).encode()
    module, _, name = handler.rpartition(".")
    function = getattr(importlib.import_module(f"lambda_src.{module}"), name)
    context = FakeLambdaContext(function_name=self.function_name, invoked_function_arn=self.function_arn,
                                memory_limit_in_mb=int(self.memory_size or 128))
    try:
        with SANDBOX:
            result = function(event, context)
    except Exception as exc:
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
    return json.dumps(result).encode()


_create_processing_job = SageMakerResponse.create_processing_job


def _run_processing_job(self: SageMakerResponse) -> Any:
    """CreateProcessingJob, then the job run as SageMaker runs its container (this module's docstring)."""
    answer = _create_processing_job(self)
    job = self.sagemaker_backend.processing_jobs[self._get_param("ProcessingJobName")]
    s3_client = boto3.client("s3", region_name=REGION)
    with tempfile.TemporaryDirectory(prefix="processing-") as root:

        def local(path: str) -> Path:
            assert path.startswith(PROCESSING_ROOT + "/"), path
            return Path(root) / path[len(PROCESSING_ROOT) + 1:]

        for processing_input in job.processing_inputs:
            bucket, _, prefix = processing_input["S3Input"]["S3Uri"].removeprefix("s3://").partition("/")
            for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    target = local(processing_input["S3Input"]["LocalPath"]) / item["Key"][len(prefix):].lstrip("/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    s3_client.download_file(bucket, item["Key"], str(target))
        outputs = job.processing_output_config["Outputs"]
        for output in outputs:
            local(output["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        entrypoint = job.app_specification["ContainerEntrypoint"]
        assert entrypoint[0] == "python3" and entrypoint[1].startswith(CODE_DIR), entrypoint
        script = ROOT / "sagemaker_jobs" / entrypoint[1][len(CODE_DIR):]
        arguments = [str(local(a)) if a.startswith(PROCESSING_ROOT + "/") else a
                     for a in job.app_specification["ContainerArguments"]]
        finished = subprocess.run([sys.executable, str(script), *arguments], capture_output=True, text=True,
                                  check=False, timeout=600)
        if finished.returncode != 0:  # .sync fails the state, with the job's FailureReason
            job.processing_job_status = "Failed"
            raise ValidationError(message=f"AlgorithmError: {finished.stderr.strip().splitlines()[-1:]}")
        for output in outputs:
            bucket, _, prefix = output["S3Output"]["S3Uri"].removeprefix("s3://").partition("/")
            folder = local(output["S3Output"]["LocalPath"])
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                s3_client.upload_file(str(path), bucket, f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}")
    job.processing_job_status = "Completed"
    return answer


@dataclass(frozen=True)
class Cloud:
    """The moto endpoint, its clients and the state machine's ARN."""

    endpoint: str
    clients: dict[str, Any]
    machine: str
    queue: str


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    definition, functions = synthesized()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**FAKE_AWS_ENVIRONMENT, "POWERTOOLS_TRACE_DISABLED": "true"}.items():
            mp.setenv(key, value)
        (environment,) = {json.dumps(f.environment, sort_keys=True) for f in functions}
        for key, value in json.loads(environment).items():
            mp.setenv(key, value)
        with moto_server() as endpoint:
            mp.setenv("MOTO_PORT", endpoint.rsplit(":", 1)[1])  # moto's interpreter calls back into this server
            mp.setenv("AWS_ENDPOINT_URL", endpoint)  # the handlers' and the processing jobs' boto3 clients
            mp.setattr(LambdaFunction, "invoke", _invoke_in_process)
            mp.setattr(SageMakerResponse, "create_processing_job", _run_processing_job)
            handler = importlib.import_module("lambda_src.backtest_fanout.handler")
            handler.runs.cache_clear()
            handler.datasets.cache_clear()
            requests.post(f"{endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}},
                          timeout=10).raise_for_status()
            clients = {name: boto3.client(name, endpoint_url=endpoint, region_name=REGION)
                       for name in ("s3", "sns", "sqs", "stepfunctions", "sagemaker", "lambda")}
            for bucket in (DATASETS, ARTIFACTS):
                clients["s3"].create_bucket(Bucket=bucket)
            topic = clients["sns"].create_topic(Name="backtest-alarms")["TopicArn"]
            queue = clients["sqs"].create_queue(QueueName="alarms")["QueueUrl"]
            queue_arn = clients["sqs"].get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
            clients["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"],
                                     Attributes={"RawMessageDelivery": "true"})
            iam_client = boto3.client("iam", endpoint_url=endpoint, region_name=REGION)
            role = iam_client.create_role(RoleName="fanout-functions", AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Principal": {"Service": "lambda.amazonaws.com"}}]}))
            for function in functions:
                clients["lambda"].create_function(
                    FunctionName=function.name, Runtime="python3.11", Handler=function.handler,
                    Role=role["Role"]["Arn"], Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
                    Environment={"Variables": function.environment}, MemorySize=3008, Timeout=900)
            machine = clients["stepfunctions"].create_state_machine(
                name="backtest-fanout", definition=json.dumps(without_sync_processing(definition)),
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/states")["stateMachineArn"]
            INVOCATIONS.reset()
            try:
                yield Cloud(endpoint, clients, machine, queue)
            finally:
                INVOCATIONS.reset()


def start(cloud: Cloud, name: str, execution_input: dict[str, Any], *, polls: int = 3000) -> dict[str, Any]:
    """Run an execution to its end; its description."""
    arn = cloud.clients["stepfunctions"].start_execution(stateMachineArn=cloud.machine, name=name,
                                                         input=json.dumps(execution_input))["executionArn"]
    for _ in range(polls):
        described: dict[str, Any] = cloud.clients["stepfunctions"].describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        threading.Event().wait(0.1)
    raise AssertionError(f"execution {name} still running after {polls} polls")


def notices(cloud: Cloud) -> list[str]:
    sqs = cloud.clients["sqs"]
    messages = sqs.receive_message(QueueUrl=cloud.queue, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=cloud.queue, ReceiptHandle=message["ReceiptHandle"])
    return [m["Body"] for m in messages]


def download_prefix(cloud: Cloud, prefix: str, folder: Path) -> list[str]:
    """Every object under ``s3://ARTIFACTS/prefix`` into ``folder``; their keys relative to the prefix."""
    s3_client, names = cloud.clients["s3"], []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=ARTIFACTS, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix):]
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            s3_client.download_file(ARTIFACTS, item["Key"], str(folder / relative))
            names.append(relative)
    return sorted(names)
