"""Training stack: the TrainingWorkflow construct inside the stage, its images, schedule, role and dashboard.

The construct alone is tested in test_training_workflow.py; here the state machine is read back from the stack's
template, with the stage's configuration, VPC, buckets and images wired in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aws_cdk.assertions import Capture, Match, Template

from stacks.book import BUILD_CONTEXT as LAMBDA_BUILD_CONTEXT
from stacks.config import load_stage_config
from stacks.constructs.container_image import BUILD_CONTEXT
from stacks.serving import experts_endpoint_name

if TYPE_CHECKING:
    from stacks.stage import SignalEngineStage
    from tests.infra.conftest import SynthesizedApp

pytestmark = pytest.mark.infra

DEV = load_stage_config("dev")
PROD = load_stage_config("prod")


def token_marker(part: dict[str, Any]) -> str:
    """A CloudFormation intrinsic inside the definition, as text that keeps the JSON valid."""
    return "<<" + json.dumps(part, sort_keys=True).replace('"', "'") + ">>"


def definition(template: Template, machine: str = "Workflow") -> dict[str, Any]:
    """The definition of the state machine whose logical id holds ``machine`` (the training workflow's, or the
    backtest fan-out's: "Backtests") as a dict, its intrinsics (Fn::GetAtt, Ref, Fn::Sub) as <<...>> markers."""
    (value,) = [resource["Properties"]["DefinitionString"] for logical_id, resource
                in template.find_resources("AWS::StepFunctions::StateMachine").items() if machine in logical_id]
    if isinstance(value, str):
        return dict(json.loads(value))
    delimiter, parts = value["Fn::Join"]
    text = delimiter.join(part if isinstance(part, str) else token_marker(part) for part in parts)
    return dict(json.loads(text))


def all_states(states: dict[str, Any]) -> dict[str, Any]:
    """States of the machine and of its Map iterators, by name."""
    found = {}
    for name, state in states.items():
        found[name] = state
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                found.update(all_states(state[key]["States"]))
    return found


@pytest.fixture(scope="module")
def states(training_template: Template) -> dict[str, Any]:
    return all_states(definition(training_template)["States"])


def training_jobs(states: dict[str, Any]) -> dict[str, Any]:
    return {n: s for n, s in states.items() if str(s.get("Resource", "")).endswith("createTrainingJob.sync")}


def test_execution_defaults_come_from_the_stage_config(states: dict[str, Any]) -> None:
    defaults = states["ApplyDefaults"]["Result"]
    assert defaults["gpu_instance_type"] == DEV.training_instance_type
    assert defaults["cpu_instance_type"] == DEV.processing_instance_type
    assert defaults["endpoint_instance_type"] == DEV.expert_instance_type
    assert defaults["profile"] == DEV.training_profile
    assert defaults["dataset_prefix"] == "bars/1d"


def test_prod_trains_on_its_own_gpu_type(prod_training_template: Template) -> None:
    prod_states = all_states(definition(prod_training_template)["States"])
    assert prod_states["ApplyDefaults"]["Result"]["gpu_instance_type"] == PROD.training_instance_type
    assert PROD.training_instance_type != DEV.training_instance_type


def test_training_jobs_use_the_training_image_asset(states: dict[str, Any], dev_stage: SignalEngineStage) -> None:
    jobs = training_jobs(states)
    assert len(jobs) >= 4  # prepare, one per expert (in the Map), gate, evaluate
    tf_hash = dev_stage.training.training_image.asset_hash
    cpu_hash = dev_stage.training.cpu_training_image.asset_hash
    for name, job in jobs.items():
        image = job["Parameters"]["AlgorithmSpecification"]["TrainingImage"]
        assert "container-assets" in image
        # the prepare jobs and every job's CPU branch (the plan's cpu) never import TensorFlow: the CPU image
        cpu = name.startswith("PrepareDataset") or name.endswith("CpuJob")
        assert (cpu_hash if cpu else tf_hash) in image, name
    assert {"PrepareDatasetWithNews", "TrainGateCpuJob", "EvaluateFromBacktestGpuJob"} <= set(jobs)


def test_training_jobs_run_in_the_vpc_with_the_sagemaker_role(states: dict[str, Any]) -> None:
    for job in training_jobs(states).values():
        params = job["Parameters"]
        assert "AppSecurityGroup" in json.dumps(params["VpcConfig"]["SecurityGroupIds"])
        assert len(params["VpcConfig"]["Subnets"]) == DEV.max_azs
        assert "SageMakerRole" in params["RoleArn"]
        assert params["StoppingCondition"]["MaxRuntimeInSeconds"] == DEV.training_max_runtime_hours * 3600


def test_failures_are_caught_and_notified(states: dict[str, Any]) -> None:
    assert states["NotifyFailure"]["Resource"].endswith(":sns:publish")
    assert "AlarmTopic" in json.dumps(states["NotifyFailure"]["Parameters"]["TopicArn"])
    for name in ("PrepareDataset", "TrainGateGpuJob", "TrainGateCpuJob", "EvaluateGpuJob", "EvaluateCpuJob"):
        assert any(c["Next"] == "NotifyFailure" for c in states[name]["Catch"]), name


def test_deploy_steps_target_the_endpoint_the_combiner_calls(
    states: dict[str, Any], serving_template: Template
) -> None:
    name = experts_endpoint_name(DEV)
    assert states["CreateEndpoint"]["Parameters"]["EndpointName"] == name
    assert states["UpdateEndpoint"]["Parameters"]["EndpointName"] == name
    assert "container-assets" in states["CreateModel"]["Parameters"]["PrimaryContainer"]["Image"]
    env = Capture()
    serving_template.has_resource_properties(
        "AWS::Lambda::Function", {"Handler": "combiner.handler.handler", "Environment": {"Variables": env}}
    )
    assert set(json.loads(env.as_object()["EXPERT_ENDPOINTS"]).values()) == {name}


def test_weekly_schedule_starts_the_workflow_with_the_stage_symbols(training_template: Template) -> None:
    training_template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": DEV.train_schedule,
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Ref": Match.string_like_regexp("StateMachine")},
                        "Input": Match.serialized_json({"symbols": list(DEV.symbols)}),
                        "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 7200},
                    }
                )
            ],
        },
    )


def test_state_machine_logs_and_traces(training_template: Template) -> None:
    training_template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {"TracingConfiguration": {"Enabled": True}, "LoggingConfiguration": Match.object_like({"Level": "ALL"})},
    )


def test_sagemaker_role_is_assumed_by_sagemaker_only(storage_template: Template) -> None:
    storage_template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "Description": Match.string_like_regexp("^signal-engine SageMaker"),
            "AssumeRolePolicyDocument": {
                "Statement": [Match.object_like({"Principal": {"Service": "sagemaker.amazonaws.com"}})]
            },
        },
    )


def test_sagemaker_role_has_no_service_wide_actions(storage_template: Template) -> None:
    role_policies = [
        p
        for logical_id, p in storage_template.find_resources("AWS::IAM::Policy").items()
        if logical_id.startswith("SageMakerRole")
    ]
    assert len(role_policies) == 1
    actions = [
        action
        for statement in role_policies[0]["Properties"]["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    ]
    assert "ecr:BatchGetImage" in actions
    assert not [a for a in actions if a == "*" or a.endswith(":*")], actions


def test_images_are_assets_built_at_deploy_time(synthesized_app: SynthesizedApp) -> None:
    """Synthesis only stages the Docker build context; the manifest tells cdk-assets what to build and push."""
    manifests = sorted(Path(synthesized_app.outdir).rglob("SignalEngineDevTraining*.assets.json"))
    assert len(manifests) == 1
    images = json.loads(manifests[0].read_text())["dockerImages"]
    sources = sorted(image["source"]["dockerFile"] for image in images.values())
    # the training images, the inference image and the Lambda image of the backtest fan-out (the book step's)
    assert sources == ["containers/book_step/Dockerfile", "containers/inference/Dockerfile",
                       "containers/training-cpu/Dockerfile", "containers/training/Dockerfile"]
    for image in images.values():
        assert image["source"]["platform"] == "linux/amd64"
        staged = manifests[0].parent / image["source"]["directory"]
        context = LAMBDA_BUILD_CONTEXT if "book_step" in image["source"]["dockerFile"] else BUILD_CONTEXT
        # CDK stages the repository's .dockerignore too (docker reads it from the context root).
        assert sorted(p.name for p in staged.iterdir() if p.name != ".dockerignore") == sorted(
            {path.split("/")[0] for path in context})


def test_dashboard_and_alarms(training_template: Template) -> None:
    (dashboard,) = training_template.find_resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "SignalEngine-Dev-Training"
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in ("ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionTime", "GPUUtilization"):
        assert metric in body
    for metric in ("ExecutionsFailed", "ExecutionsTimedOut"):
        training_template.has_resource_properties(
            "AWS::CloudWatch::Alarm",
            {"MetricName": metric, "Namespace": "AWS/States", "AlarmActions": [Match.any_value()]},
        )


def test_the_backtest_fanout_maps_batches_on_lambda_or_processing(training_template: Template) -> None:
    """The fan-out (step_functions/backtest_fanout.py): a Distributed Map over the plan's batches.json, each batch
    on Lambda or on a Processing job in the CPU training image, retried, failures caught and checked."""
    fanout = definition(training_template, "Backtests")
    states = all_states(fanout["States"])
    assert fanout["StartAt"] == "Plan"
    batches = fanout["States"]["RunBatches"]
    assert batches["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert batches["ItemReader"]["Parameters"]["Key.$"] == "$.plan.items_key"
    for name in ("BatchOnLambda", "BatchOnProcessing"):
        assert states[name]["Catch"][0]["Next"] == "BatchFailed"
        assert any("States.ALL" in r["ErrorEquals"] and r["MaxAttempts"] == 2 for r in states[name]["Retry"])
    assert states["BatchOnLambda"]["Retry"][0] == {
        "ErrorEquals": ["FanOutError", "ConfigError", "InputError", "BatchError"], "MaxAttempts": 0}
    processing = states["BatchOnProcessing"]["Parameters"]
    assert processing["ProcessingResources"]["ClusterConfig"]["InstanceType"] == DEV.processing_instance_type
    assert "training-cpu" in json.dumps(processing["AppSpecification"]["ImageUri"]) or \
        processing["AppSpecification"]["ImageUri"].startswith("<<")
    assert processing["NetworkConfig"]["VpcConfig"]["Subnets"]
    assert fanout["States"]["CheckBatches"]["Next"] == "MergeRunner"
    functions = {resource["Properties"]["ImageConfig"]["Command"][0]: resource["Properties"] for resource
                 in training_template.find_resources("AWS::Lambda::Function").values()
                 if "ImageConfig" in resource["Properties"]}
    assert sorted(functions) == [f"backtest_fanout.handler.{step}" for step in ("batch", "check", "merge", "plan")]
    assert functions["backtest_fanout.handler.batch"]["Timeout"] == 900
    assert functions["backtest_fanout.handler.merge"]["EphemeralStorage"] == {"Size": 4096}
    assert all(f["Environment"]["Variables"]["BACKTESTS_STORE"] for f in functions.values())
    assert all("KmsKeyArn" in f and f["VpcConfig"]["SubnetIds"] for f in functions.values())
