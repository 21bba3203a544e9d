"""The training workflow construct: its states follow the domain step list, every task retries and catches,
the quality gate branches, the failure path carries the cause; cdk-nag finds nothing unacknowledged."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aws_cdk import App, Duration, Environment, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

from signal_engine.workflow.steps import STEPS, Step
from step_functions.training_workflow import (
    EXECUTION_INPUT_SCHEMA,
    SYNC_TRAINING,
    ServerlessEndpoint,
    TrainingWorkflow,
)

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
TRAINING_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/signal-engine-training:1"
INFERENCE_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/signal-engine-inference:1"
CPU_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/signal-engine-training-cpu:1"


def build_stack() -> tuple[Stack, TrainingWorkflow]:
    app = App()
    stack = Stack(app, "TrainingWorkflowTest", env=Environment(account="123456789012", region="us-east-1"))
    role = iam.Role(stack, "SageMakerRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    workflow = TrainingWorkflow(
        stack, "Training",
        datasets_bucket=s3.Bucket.from_bucket_name(stack, "Datasets", "datasets-bucket"),
        artifacts_bucket=s3.Bucket.from_bucket_name(stack, "Artifacts", "artifacts-bucket"),
        training_image=TRAINING_IMAGE, inference_image=INFERENCE_IMAGE, sagemaker_role=role,
        cpu_training_image=CPU_IMAGE,
        alarm_topic=sns.Topic.from_topic_arn(stack, "Alarms", "arn:aws:sns:us-east-1:123456789012:alarms"),
        endpoint_poll=Duration.seconds(30),
    )
    return stack, workflow


@pytest.fixture(scope="module")
def built() -> tuple[Stack, TrainingWorkflow]:
    return build_stack()


@pytest.fixture(scope="module")
def template(built: tuple[Stack, TrainingWorkflow]) -> Template:
    return Template.from_stack(built[0])


def resolve(value: Any) -> str:
    """A DefinitionString as text: Fn::Join parts concatenated, references as <Ref:Id> / <Attr:Id.Attr>."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(resolve(p) for p in parts)
    if value.get("Ref") == "AWS::Partition":
        return "aws"
    if "Ref" in value:
        return f"<Ref:{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return f"<Attr:{'.'.join(value['Fn::GetAtt'])}>"
    raise AssertionError(f"unexpected intrinsic in DefinitionString: {value}")


@pytest.fixture(scope="module")
def definition(template: Template) -> dict[str, Any]:
    (machine,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    parsed: dict[str, Any] = json.loads(resolve(machine["Properties"]["DefinitionString"]))
    return parsed


def happy_path(definition: dict[str, Any]) -> list[str]:
    """State names from StartAt, taking each Choice's first branch, to the end."""
    states, name, path = definition["States"], definition["StartAt"], []
    while name and name not in path:
        path.append(name)
        state = states[name]
        name = state["Choices"][0]["Next"] if state["Type"] == "Choice" else state.get("Next")
    return path


def test_states_follow_the_step_list(definition: dict[str, Any]) -> None:
    """Each step's states (its own, or its Choices and jobs: ``<state>WalksForward``, ``<state>GpuJob``) in order."""
    path = happy_path(definition)
    step_states = [s.state for s in STEPS]
    positions = [min(i for i, name in enumerate(path) if name.startswith(state)) for state in step_states]
    assert positions == sorted(positions), f"states {step_states} out of order in {path}"
    assert path[-1] == "Deployed"


IMAGES = {"gpu": TRAINING_IMAGE, "cpu": CPU_IMAGE}


def step_jobs(definition: dict[str, Any], step: Step) -> list[tuple[dict[str, Any], str]]:
    """Every job state of ``step`` (each variant: WithNews, FromBacktest) with the accelerator it runs on."""
    states = definition["States"]
    if step.kind == "map_job":
        assert states[step.state]["Type"] == "Map" and states[step.state]["ItemsPath"] == "$.plan.document.experts"
        states = states[step.state]["ItemProcessor"]["States"]
    variants = {"prepare_dataset": ("", "WithNews"), "train_gate": ("", "FromBacktest"),
                "evaluate": ("", "FromBacktest")}.get(step.name, ("",))
    if step.instance == "plan":
        return [(states[f"{step.state}{v}{a.capitalize()}Job"], a) for v in variants for a in ("gpu", "cpu")]
    return [(states[f"{step.state}{v}"], step.instance) for v in variants]


def test_each_job_step_runs_its_entry_point_as_a_sync_training_job(definition: dict[str, Any]) -> None:
    """On the instance type and image of its accelerator: the prepare job's (cpu), else the plan's for each job."""
    assert [(s.name, s.instance) for s in STEPS if s.kind in ("job", "map_job")] == [
        ("prepare_dataset", "cpu"), ("train_experts", "plan"), ("train_gate", "plan"), ("evaluate", "plan")]
    for step in STEPS:
        if step.kind not in ("job", "map_job"):
            continue
        jobs = [(job, f"$.run.{accelerator}_instance_type", IMAGES[accelerator])
                for job, accelerator in step_jobs(definition, step)]
        for job, instance, image in jobs:
            assert job["Resource"] == SYNC_TRAINING
            assert job["Parameters"]["HyperParameters"]["sagemaker_program"] == f"{step.entry}.py"
            assert (ROOT / "sagemaker_jobs" / f"{step.entry}.py").is_file()
            assert job["Parameters"]["ResourceConfig"]["InstanceType.$"] == instance
            assert job["Parameters"]["AlgorithmSpecification"]["TrainingImage"] == image
            assert job["Parameters"]["TrainingJobName.$"].startswith("States.Format('se-{}-{}-{}', $.ids.run, ")
            assert "$$.State.RetryCount" in job["Parameters"]["TrainingJobName.$"]


def test_the_map_routes_each_expert_by_its_planned_accelerator(definition: dict[str, Any]) -> None:
    mapped = definition["States"]["TrainExperts"]
    assert definition["States"]["PrepareDataset"]["Next"] == "ReadPlan"
    assert definition["States"]["ReadPlan"]["Parameters"]["Key.$"] == "States.Format('runs/{}/plan.json', " \
        "$$.Execution.Name)"
    assert mapped["ItemSelector"]["accelerator.$"] == "$$.Map.Item.Value.accelerator"
    processor = mapped["ItemProcessor"]["States"]
    assert mapped["ItemProcessor"]["StartAt"] == "TrainExpertsAccelerator"
    assert routes(processor["TrainExpertsAccelerator"]) == [
        ("$.accelerator", "gpu", "TrainExpertsGpuJob"), ("$.accelerator", "cpu", "TrainExpertsCpuJob")]
    assert processor[processor["TrainExpertsAccelerator"]["Default"]]["Type"] == "Fail"  # fails the Map: caught


def routes(choice: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(variable, accelerator, next state) of each rule of an accelerator Choice: the variable present, a string,
    and equal to the accelerator."""
    out = []
    for rule in choice["Choices"]:
        present, string, equals = rule["And"]
        variable = equals["Variable"]
        assert present == {"Variable": variable, "IsPresent": True} and string == {"Variable": variable,
                                                                                  "IsString": True}
        out.append((variable, equals["StringEquals"], rule["Next"]))
    return out


@pytest.mark.parametrize("step", ["TrainGate", "Evaluate"])
def test_the_gate_and_evaluate_jobs_run_on_the_accelerator_the_plan_names(definition: dict[str, Any],
                                                                           step: str) -> None:
    """Walking forward or reading a backtest's batches, each job runs on the plan's accelerator for it
    (``steps.<step>.accelerator`` of the plan ReadPlan put at $.plan.document); a plan without one, or with another,
    is a failure, notified."""
    states = definition["States"]
    name = {"TrainGate": "train_gate", "Evaluate": "evaluate"}[step]
    walks = states[f"{step}WalksForward"]
    assert [rule["Next"] for rule in walks["Choices"]] == [f"{step}Accelerator"]
    assert walks["Default"] == f"{step}FromBacktestAccelerator"
    for variant in ("", "FromBacktest"):
        choice = states[f"{step}{variant}Accelerator"]
        planned = f"$.plan.document.steps.{name}.accelerator"
        assert routes(choice) == [(planned, "gpu", f"{step}{variant}GpuJob"),
                                  (planned, "cpu", f"{step}{variant}CpuJob")]
        unknown = states[choice["Default"]]
        assert unknown["Parameters"]["Error"] == "UnknownAccelerator" and unknown["ResultPath"] == "$.error"
        assert unknown["Next"] == "NotifyFailure"
        gpu, cpu = (copy.deepcopy(states[f"{step}{variant}{a}Job"]) for a in ("Gpu", "Cpu"))
        assert (gpu["Parameters"]["AlgorithmSpecification"].pop("TrainingImage"),
                gpu["Parameters"]["ResourceConfig"].pop("InstanceType.$")) == (TRAINING_IMAGE,
                                                                              "$.run.gpu_instance_type")
        assert (cpu["Parameters"]["AlgorithmSpecification"].pop("TrainingImage"),
                cpu["Parameters"]["ResourceConfig"].pop("InstanceType.$")) == (CPU_IMAGE, "$.run.cpu_instance_type")
        assert gpu == cpu, "the same job but for its image and instance type"


def test_the_prepare_job_reads_the_exported_news_only_when_the_news_slot_is_trained(
        definition: dict[str, Any]) -> None:
    states = definition["States"]
    choice = states["PrepareDatasetReadsNews"]
    (rule,) = choice["Choices"]
    slot = "$.run.hyperparameters.moe.news"
    assert rule == {"Not": {"And": [{"Variable": slot, "IsPresent": True}, {"Variable": slot, "IsBoolean": True},
                                    {"Variable": slot, "BooleanEquals": True}]}, "Next": "PrepareDataset"}
    assert choice["Default"] == "PrepareDatasetWithNews"
    plain, scoring = states["PrepareDataset"], states["PrepareDatasetWithNews"]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri.$"]
                for c in scoring["Parameters"]["InputDataConfig"]}
    assert channels == {"raw": "States.Format('s3://datasets-bucket/{}/', $.run.dataset_prefix)",
                        "news": "States.Format('s3://datasets-bucket/{}/', $.run.news_prefix)"}
    assert [c["ChannelName"] for c in plain["Parameters"]["InputDataConfig"]] == ["raw"]
    for state in (plain, scoring):
        assert (state["ResultPath"], state["Next"]) == ("$.dataset", "ReadPlan")
        assert state["Parameters"]["HyperParameters"]["sagemaker_program"] == "prepare.py"
        # the CPU image has the text encoder's packages: news scoring needs no TensorFlow
        assert state["Parameters"]["AlgorithmSpecification"]["TrainingImage"] == CPU_IMAGE


def test_data_flows_from_step_to_step(definition: dict[str, Any]) -> None:
    states = definition["States"]
    assert states["PrepareDataset"]["ResultPath"] == "$.dataset"
    assert states["PrepareDataset"]["ResultSelector"] == {"job.$": "$.TrainingJobName",
                                                          "model.$": "$.ModelArtifacts.S3ModelArtifacts"}
    expert_job = states["TrainExperts"]["ItemProcessor"]["States"]["TrainExpertsCpuJob"]
    assert expert_job["Parameters"]["HyperParameters"]["expert.$"] == "$.expert"
    assert expert_job["Parameters"]["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri.$"] == "$.dataset.model"
    assert states["TrainExperts"]["ItemSelector"]["expert.$"] == "$$.Map.Item.Value.expert"
    for accelerator in ("Gpu", "Cpu"):
        assert states[f"TrainGate{accelerator}Job"]["ResultPath"] == "$.gate"
        channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri.$"]
                    for c in states[f"Evaluate{accelerator}Job"]["Parameters"]["InputDataConfig"]}
        assert channels["dataset"] == "$.dataset.model" and channels["gate"] == "$.gate.model"
        assert "runs/{}/experts/" in channels["experts"]
        assert states[f"Evaluate{accelerator}Job"]["Next"] == "ReadDecision"
    assert states["ReadDecision"]["ResultSelector"] == {"report.$": "States.StringToJson($.Body)"}
    container = states["CreateModel"]["Parameters"]["PrimaryContainer"]
    assert container["ModelDataUrl.$"] == "$.evaluation.model" and container["Image"] == INFERENCE_IMAGE
    assert states["PromoteVersion"]["Parameters"]["Body.$"] == "$.publish.version"
    assert states["PromoteVersion"]["Parameters"]["Key"] == "models/CURRENT"


def test_every_task_retries_and_catches_into_the_failure_notice(definition: dict[str, Any]) -> None:
    states = definition["States"]
    for name, state in states.items():
        if state["Type"] not in ("Task", "Map") or name == "NotifyFailure":
            continue
        catches = state.get("Catch", [])
        assert catches and catches[0]["Next"] == "NotifyFailure", f"{name} has no catch to NotifyFailure"
        assert catches[0]["ErrorEquals"] == ["States.ALL"] and catches[0]["ResultPath"] == "$.error"
        if state["Type"] == "Task":
            assert state.get("Retry"), f"{name} never retries"


def test_training_jobs_retry_throttling_but_not_a_failed_job(definition: dict[str, Any]) -> None:
    """A failed job (States.TaskFailed: a code error, no capacity) is not rerun; SageMaker retries internal errors
    itself (RetryStrategy)."""
    processor = definition["States"]["TrainExperts"]["ItemProcessor"]["States"]
    states = definition["States"]
    for state in (states["TrainGateGpuJob"], states["TrainGateCpuJob"], processor["TrainExpertsGpuJob"],
                  processor["TrainExpertsCpuJob"]):
        retried = {error for retry in state["Retry"] for error in retry["ErrorEquals"]}
        assert {"ThrottlingException", "SageMaker.ResourceLimitExceededException"} <= retried
        assert not retried & {"States.TaskFailed", "States.ALL"}, retried
        assert state["Parameters"]["RetryStrategy"] == {"MaximumRetryAttempts": 2}


def test_failure_path_publishes_the_cause_then_fails(definition: dict[str, Any]) -> None:
    states = definition["States"]
    notify = states["NotifyFailure"]
    assert notify["Resource"] == "arn:aws:states:::sns:publish"
    assert "$.error.Cause" in notify["Parameters"]["Message.$"]
    assert states[notify["Next"]] == {"Type": "Fail", "Error": "TrainingFailed",
                                      "CausePath": "States.Format('{}: {}', $.error.Error, $.error.Cause)"}


def test_quality_gate_deploys_only_when_passed(definition: dict[str, Any]) -> None:
    gate = definition["States"]["QualityGate"]
    assert gate["Choices"] == [{"Variable": "$.decision.report.passed", "BooleanEquals": True, "Next": "Publish"}]
    failed = definition["States"][gate["Default"]]
    assert failed["Resource"] == "arn:aws:states:::sns:publish"
    assert definition["States"][failed["Next"]]["Error"] == "QualityGateFailed"


def test_endpoint_is_created_or_updated(definition: dict[str, Any]) -> None:
    states = definition["States"]
    exists = states["EndpointExists"]
    assert exists["Choices"][0]["Next"] == "UpdateEndpoint" and exists["Default"] == "CreateEndpoint"
    assert states["UpdateEndpoint"]["Next"] == states["CreateEndpoint"]["Next"] == "WaitForEndpoint"
    promote = states["EndpointInService"]["Choices"][0]
    assert promote["Next"] == "PromoteVersion"
    assert {"Variable": "$.endpoint.config", "StringEqualsPath": "$.publish.name"} in promote["And"]
    assert states["UpdateEndpoint"]["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:updateEndpoint"
    assert states["CreateEndpoint"]["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:createEndpoint"
    assert states["WaitForEndpoint"]["Seconds"] == 30


def test_state_machine_is_traced_and_logged(template: Template) -> None:
    template.has_resource_properties("AWS::StepFunctions::StateMachine", {
        "TracingConfiguration": {"Enabled": True},
        "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": True}),
        "DefinitionString": Match.any_value(),
    })


def test_state_machine_may_run_training_jobs_and_pass_only_the_sagemaker_role(template: Template) -> None:
    for statement in (
        {"Action": ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags"]},
        {"Action": "iam:PassRole", "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
         "Resource": {"Fn::GetAtt": [Match.string_like_regexp("^SageMakerRole"), "Arn"]}},
    ):
        template.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {
            "Statement": Match.array_with([Match.object_like(statement)])}})
    policies = template.find_resources("AWS::IAM::Policy")
    passed = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]
              if "iam:PassRole" in s["Action"]]
    assert passed and all("Condition" in s for s in passed)


def test_the_readme_example_input_matches_the_schema() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- training-input -->")
    block = readme[start:].split("```json", 1)[1].split("```", 1)[0]
    jsonschema.validate(json.loads(block), EXECUTION_INPUT_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"symbols": []}, EXECUTION_INPUT_SCHEMA)


def test_cdk_nag_finds_nothing_unacknowledged(built: tuple[Stack, TrainingWorkflow]) -> None:
    stack, _ = built
    report = AwsSolutionsChecks(verbose=True).validate_scope(stack)
    problems = [f"{v.rule_name} at {r.construct_path}" for v in report.violations for r in v.violating_resources
                if "/Training/" in (r.construct_path or "")]
    assert problems == []


def test_serverless_endpoint_config_replaces_instances_and_drops_the_vpc() -> None:
    app = App()
    stack = Stack(app, "ServerlessWorkflowTest", env=Environment(account="123456789012", region="us-east-1"))
    role = iam.Role(stack, "SageMakerRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    isolated = ec2.SubnetConfiguration(name="App", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
    vpc = ec2.Vpc(stack, "Vpc", max_azs=1, nat_gateways=0, subnet_configuration=[isolated])
    TrainingWorkflow(
        stack, "Training",
        datasets_bucket=s3.Bucket.from_bucket_name(stack, "Datasets", "datasets-bucket"),
        artifacts_bucket=s3.Bucket.from_bucket_name(stack, "Artifacts", "artifacts-bucket"),
        training_image=TRAINING_IMAGE, inference_image=INFERENCE_IMAGE, sagemaker_role=role,
        alarm_topic=sns.Topic.from_topic_arn(stack, "Alarms", "arn:aws:sns:us-east-1:123456789012:alarms"),
        vpc=vpc, subnets=ec2.SubnetSelection(subnet_group_name="App"),
        security_groups=[ec2.SecurityGroup(stack, "Jobs", vpc=vpc)],
        endpoint_serverless=ServerlessEndpoint(memory_mb=3072, max_concurrency=8),
    )
    (machine,) = Template.from_stack(stack).find_resources("AWS::StepFunctions::StateMachine").values()
    states = json.loads(resolve(machine["Properties"]["DefinitionString"]))["States"]
    assert "ids" in states["TrainExperts"]["ItemSelector"]["ids.$"]
    (variant,) = states["CreateEndpointConfig"]["Parameters"]["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 8}
    assert "InstanceType.$" not in variant and "InitialInstanceCount" not in variant
    assert "VpcConfig" not in states["CreateModel"]["Parameters"]
    assert '"VpcConfig"' in json.dumps(states)  # the training jobs still run in the VPC


@pytest.mark.parametrize(("memory_mb", "max_concurrency"), [(1000, 5), (7168, 5), (2048, 0), (2048, 201)])
def test_serverless_settings_outside_sagemakers_limits_are_refused(memory_mb: int, max_concurrency: int) -> None:
    with pytest.raises(ValueError, match="serverless"):
        ServerlessEndpoint(memory_mb=memory_mb, max_concurrency=max_concurrency)


def test_stack_deletion_cleans_up_the_endpoint_configs_and_models(template: Template) -> None:
    (cleanup,) = template.find_resources("Custom::WorkflowCleanup").values()
    assert {k: v for k, v in cleanup["Properties"].items() if k != "ServiceToken"} == {
        "EndpointName": "signal-engine-experts", "NamePrefix": "signal-engine-", "TagKey": "signal-engine:endpoint",
        "TagValue": "signal-engine-experts"}
    template.has_resource_properties("AWS::Lambda::Function", {"Handler": "handler.on_event"})
    statements = [s for p in template.find_resources("AWS::IAM::Policy").values()
                  for s in p["Properties"]["PolicyDocument"]["Statement"]
                  if any(str(a).startswith("sagemaker:Delete") for a in _list(s["Action"]))]
    deletes = {a: json.dumps(s["Resource"]) for s in statements for a in _list(s["Action"])}
    assert deletes["sagemaker:DeleteEndpoint"].count("endpoint/signal-engine-experts") == 1
    assert "model/signal-engine-*" in deletes["sagemaker:DeleteModel"]
    assert "endpoint-config/signal-engine-*" in deletes["sagemaker:DeleteEndpointConfig"]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
