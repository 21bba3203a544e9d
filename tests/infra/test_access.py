"""Access rights, proven on the synthesized templates by a real IAM policy simulator (@cloud-copilot/iam-simulate).

Every (action, resource) that a state of the training state machine or one of our Lambdas performs must be allowed
to its role; where the resource is encrypted with one of the stage's KMS keys, the KMS requests the service makes
for the caller must be allowed by the role and the key policy. See tests/infra/access.py.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk.assertions import Template

from stacks.config import COLLECTORS
from tests.infra.access import (
    ACCOUNT,
    ALLOWED,
    REGION,
    Access,
    Request,
    ResolveError,
    Resolver,
    evaluate,
    function_handler,
    lambda_requests,
    simulate,
    simulation,
    state_machine_requests,
    states,
)
from tests.infra.aws_calls import LAMBDA_CALLS, lambda_group
from tests.infra.conftest import SynthesizedApp

Templates = dict[str, dict[str, Any]]


def stage_templates(app: SynthesizedApp, stage: str) -> Templates:
    return {child.stack_name: dict(Template.from_stack(child).to_json())
            for child in app.stages[stage].node.children if isinstance(child, Stack)}


@pytest.fixture(scope="session", params=["dev", "prod"])
def templates(request: pytest.FixtureRequest, synthesized_app: SynthesizedApp) -> Templates:
    return stage_templates(synthesized_app, request.param)


def all_requests(access: Access) -> list[Request]:
    requests: list[Request] = []
    for stack, logical, _ in access.resources("AWS::StepFunctions::StateMachine"):
        requests += state_machine_requests(access, stack, logical)
    return requests + lambda_requests(access)


def denials(templates: Templates) -> list[str]:
    access = Access(Resolver(templates))
    return [f"{decision}: {request}" for request, decision in evaluate(access, all_requests(access))
            if decision != ALLOWED]


def test_every_state_and_lambda_request_is_allowed(templates: Templates) -> None:
    access = Access(Resolver(templates))
    requests = all_requests(access)
    results = evaluate(access, requests)
    denied = [f"{decision}: {request}" for request, decision in results if decision != ALLOWED]
    assert not denied, "\n".join(denied)
    # What was checked: every task state of both state machines (the training workflow, the backtest fan-out) and
    # every function of ours, KMS included.
    machines = list(access.resources("AWS::StepFunctions::StateMachine"))
    assert len(machines) == 2
    definitions = [json.loads(access.resolver.resolve(stack, machine["Properties"]["DefinitionString"]))
                   for stack, _, machine in machines]
    tasks = {name for definition in definitions for name, state in states(definition) if state["Type"] == "Task"}
    assert tasks <= {request.who for request in requests}
    assert {"ReadDecision", "PromoteVersion", "NotifyFailure", "NotifyQualityGateFailed", "RunBatches",
            "NotifyBacktestFailure"} <= {request.who for request in requests if request.kms_key}
    # ... and what each SageMaker job does with the SageMaker role: its inputs in, its output out, KMS included.
    for kind, resource in (("training job", "createTrainingJob.sync"), ("processing job", "createProcessingJob.sync")):
        jobs = {name for definition in definitions for name, state in states(definition)
                if state.get("Resource", "").endswith(resource)}
        checked = {r.who for r in requests if r.who.endswith(f"({kind})")}
        assert jobs and {f"{name} ({kind})" for name in jobs} == checked
    assert {"states:StartExecution", "lambda:InvokeFunction"} <= {r.action for r in requests}
    ours = [logical for _, logical, function in access.resources("AWS::Lambda::Function")
            if lambda_group(function_handler(function["Properties"]))]
    # the collectors, the bars export, the combiner and its batch worker, the book step, the fan-out's plan, batch,
    # check and merge
    assert len(ours) == len(COLLECTORS) + 4 + 4
    assert all(any(request.who.startswith(f"{name} ") for request in requests) for name in ours)
    counts = Counter("kms" if request.kms_key else "lambda" if request.who.split(" ")[0] in ours
                     else "training job" if request.who.endswith("(training job)") else "workflow"
                     for request in requests)
    print(f"access checks: {len(requests)} requests ({dict(counts)})")


def test_sagemaker_arns_in_policies_are_lower_case(templates: Templates) -> None:
    """SageMaker builds ARNs from lower-cased names: a policy naming a mixed-case name matches nothing."""
    access = Access(Resolver(templates))
    resources: list[str] = []
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for stack, _, policy in access.resources(kind):
            for statement in access.resolver.resolve(stack, policy["Properties"]["PolicyDocument"])["Statement"]:
                value = statement.get("Resource", [])
                resources += [r for r in ([value] if isinstance(value, str) else value) if ":sagemaker:" in r]
    assert any(":endpoint/" in r for r in resources)
    assert [r for r in resources if r.split(":", 5)[5] != r.split(":", 5)[5].lower()] == []


def _without_statement(templates: Templates, stack_suffix: str, kind: str, match: str, *,
                       logical: str = "") -> Templates:
    """A copy of the templates with the one policy statement whose JSON contains ``match`` removed (in a policy
    whose logical id contains ``logical``)."""
    changed = copy.deepcopy(templates)
    removed = 0
    for stack, template in changed.items():
        if not stack.endswith(stack_suffix):
            continue
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != kind or logical not in logical_id:
                continue
            statements = resource["Properties"]["PolicyDocument"]["Statement"]
            kept = [s for s in statements if match not in json.dumps(s)]
            removed += len(statements) - len(kept)
            resource["Properties"]["PolicyDocument"]["Statement"] = kept
    assert removed == 1, f"expected one statement matching {match!r}, removed {removed}"
    return changed


def test_removing_the_alarm_key_grant_denies_the_failure_notice(synthesized_app: SynthesizedApp) -> None:
    templates = stage_templates(synthesized_app, "dev")
    broken = _without_statement(templates, "-Training", "AWS::IAM::Policy", "sns.", logical="WorkflowStateMachine")
    denied = denials(broken)
    assert denied and all(("NotifyFailure" in d or "NotifyQualityGateFailed" in d) and "kms:" in d for d in denied)
    assert any("NotifyFailure: kms:GenerateDataKey" in d for d in denied)


def test_removing_the_export_listing_grant_denies_the_bars_export(synthesized_app: SynthesizedApp) -> None:
    templates = stage_templates(synthesized_app, "dev")
    broken = _without_statement(templates, "-Storage", "AWS::IAM::ManagedPolicy", '["bars/*", "bars"]')
    assert [d.split(" on ")[0] for d in denials(broken)] == [
        "ImplicitlyDenied: ExportBars38B36299 (export_bars): s3:ListBucket"]


def test_removing_the_news_listing_grant_denies_the_news_export(synthesized_app: SynthesizedApp) -> None:
    templates = stage_templates(synthesized_app, "dev")
    broken = _without_statement(templates, "-Storage", "AWS::IAM::ManagedPolicy", '["news/*", "news"]')
    assert [d.split(" on ")[0] for d in denials(broken)] == [
        "ImplicitlyDenied: ExportBars38B36299 (export_bars): s3:ListBucket"]  # its news/ listing only


def test_the_key_policy_is_evaluated_too(synthesized_app: SynthesizedApp) -> None:
    """The role's grant alone is not enough: a data key whose policy no longer trusts the account denies."""
    templates = copy.deepcopy(stage_templates(synthesized_app, "dev"))
    storage = next(t for name, t in templates.items() if name.endswith("-Storage"))
    key = next(r for r in storage["Resources"].values() if r["Type"] == "AWS::KMS::Key")
    key["Properties"]["KeyPolicy"]["Statement"] = [
        s for s in key["Properties"]["KeyPolicy"]["Statement"] if ":root" not in json.dumps(s)]
    denied = denials(templates)
    assert any("ReadDecision: kms:Decrypt" in d for d in denied)
    assert any("Combiner7ED28F2A (combiner): kms:Decrypt" in d for d in denied)
    assert not any(" s3:" in d for d in denied)


def test_conditions_and_bucket_policy_denies_are_evaluated(synthesized_app: SynthesizedApp) -> None:
    templates = stage_templates(synthesized_app, "dev")
    access = Access(Resolver(templates))
    requests = lambda_requests(access)
    put = next(r for r in requests if r.action == "s3:PutObject" and "(export_bars)" in r.who)
    listing = next(r for r in requests if r.action == "s3:ListBucket")
    kms = next(r for r in state_machine_requests(access, *_machine(access)) if r.who == "NotifyFailure" and r.kms_key)
    insecure = Request(put.who, put.role_arn, put.action, put.resource, {"aws:SecureTransport": "false"})
    other_prefix = Request(listing.who, listing.role_arn, listing.action, listing.resource, {"s3:prefix": "models/"})
    direct = Request(kms.who, kms.role_arn, kms.action, kms.resource, {"kms:CallerAccount": ACCOUNT},
                     kms_key=True)  # the same key, asked directly rather than through SNS
    results = [r["result"] for r in simulate([simulation(access, r) for r in (insecure, other_prefix, direct)])]
    assert results == ["ExplicitlyDenied", "ImplicitlyDenied", "ImplicitlyDenied"]


def _machine(access: Access) -> tuple[str, str]:
    """The training workflow's state machine."""
    (stack, logical, _), = [m for m in access.resources("AWS::StepFunctions::StateMachine") if "Workflow" in m[1]]
    return stack, logical


def test_the_inventory_names_an_iam_action_for_every_call() -> None:
    assert all(call.action.split(":")[0] in ("s3", "dynamodb", "secretsmanager", "sagemaker", "lambda")
               for calls in LAMBDA_CALLS.values() for call in calls)


# -- the resolver --------------------------------------------------------------------------------------------

RESOLVER_TEMPLATES: Templates = {
    "Base": {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {}},
            "Named": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "my-bucket"}},
            "Role": {"Type": "AWS::IAM::Role", "Properties": {"Path": "/service/"}},
            "Key": {"Type": "AWS::KMS::Key", "Properties": {}},
            "Topic": {"Type": "AWS::SNS::Topic", "Properties": {}},
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "dlq"}},
        },
        "Outputs": {
            "BucketArn": {"Value": {"Fn::GetAtt": ["Named", "Arn"]}},
            "Exported": {"Value": {"Ref": "Topic"}, "Export": {"Name": {"Fn::Sub": "${AWS::StackName}-topic"}}},
        },
    },
    "User": {"Resources": {}, "Parameters": {"Size": {"Type": "Number", "Default": "3"}}},
}


@pytest.mark.parametrize(("stack", "value", "expected"), [
    ("Base", {"Ref": "Bucket"}, "base-bucket"),
    ("Base", {"Fn::GetAtt": ["Named", "Arn"]}, "arn:aws:s3:::my-bucket"),
    ("Base", {"Fn::GetAtt": "Role.Arn"}, f"arn:aws:iam::{ACCOUNT}:role/service/Base-Role"),
    ("Base", {"Fn::GetAtt": ["Queue", "Arn"]}, f"arn:aws:sqs:{REGION}:{ACCOUNT}:dlq"),
    ("Base", {"Ref": "Queue"}, f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/dlq"),
    ("Base", {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::", {"Ref": "Named"}, "/*"]]},
     "arn:aws:s3:::my-bucket/*"),
    ("Base", {"Fn::Sub": "${Named.Arn}/${Named}/${!Literal}/${AWS::Region}"},
     f"arn:aws:s3:::my-bucket/my-bucket/${{Literal}}/{REGION}"),
    ("Base", {"Fn::Sub": ["${X}-${AWS::AccountId}", {"X": {"Ref": "Named"}}]}, f"my-bucket-{ACCOUNT}"),
    ("Base", {"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}, "b"),
    ("User", {"Fn::GetStackOutput": {"StackName": "Base", "Region": {"Ref": "AWS::Region"}, "OutputName": "BucketArn"}},
     "arn:aws:s3:::my-bucket"),
    ("User", {"Fn::ImportValue": "Base-topic"}, f"arn:aws:sns:{REGION}:{ACCOUNT}:Base-Topic"),
    ("User", {"Ref": "Size"}, "3"),
    ("User", ["a", {"Ref": "AWS::NoValue"}], ["a"]),
])
def test_the_resolver_resolves_intrinsics(stack: str, value: Any, expected: Any) -> None:
    assert Resolver(RESOLVER_TEMPLATES).resolve(stack, value) == expected


def test_the_key_arn_and_id_agree() -> None:
    resolver = Resolver(RESOLVER_TEMPLATES)
    key_id = resolver.resolve("Base", {"Ref": "Key"})
    assert resolver.resolve("Base", {"Fn::GetAtt": ["Key", "Arn"]}) == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"


@pytest.mark.parametrize(("value", "message"), [
    ({"Fn::GetAtt": ["Bucket", "WebsiteURL"]}, "Fn::GetAtt Bucket.WebsiteURL"),
    ({"Fn::Transform": {}}, "Fn::Transform is not supported"),
    ({"Ref": "Missing"}, "no resource 'Missing'"),
    ({"Fn::ImportValue": "nobody"}, "no stack exports it"),
    ({"Fn::GetStackOutput": {"StackName": "Base", "OutputName": "Nope"}}, "no output 'Nope'"),
])
def test_the_resolver_refuses_what_it_cannot_resolve(value: Any, message: str) -> None:
    with pytest.raises(ResolveError, match=message):
        Resolver(RESOLVER_TEMPLATES).resolve("Base", value)


def test_the_cleanup_may_delete_what_the_workflow_created(templates: Templates) -> None:
    """On stack deletion the cleanup function deletes the experts' endpoint and the signal-engine-* endpoint configs
    and models the workflow tagged (lambda_src/workflow_cleanup/handler.py): each call, on a sample name."""
    access = Access(Resolver(templates))
    ((stack, logical, function),) = [(s, lg, f) for s, lg, f in access.resources("AWS::Lambda::Function")
                                     if f["Properties"].get("Handler") == "handler.on_event"]
    ((_, _, cleanup),) = [(s, lg, r) for s, lg, r in access.resources("Custom::WorkflowCleanup")]
    role = access.resolver.resolve(stack, function["Properties"]["Role"])
    endpoint = access.resolver.resolve(stack, cleanup["Properties"]["EndpointName"])
    prefix = cleanup["Properties"]["NamePrefix"]
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    sample = f"{prefix}0f8b6f2e-3c1d-4e5a-9b7c-2d4e6f8a0b1c"
    calls = [("sagemaker:DescribeEndpoint", f"{arn}:endpoint/{endpoint.lower()}"),
             ("sagemaker:DeleteEndpoint", f"{arn}:endpoint/{endpoint.lower()}"),
             ("sagemaker:ListEndpointConfigs", "*"), ("sagemaker:ListModels", "*"),
             ("sagemaker:ListTags", f"{arn}:endpoint-config/{sample}"), ("sagemaker:ListTags", f"{arn}:model/{sample}"),
             ("sagemaker:DeleteEndpointConfig", f"{arn}:endpoint-config/{sample}"),
             ("sagemaker:DeleteModel", f"{arn}:model/{sample}")]
    requests = [Request(f"{logical} (cleanup)", role, action, resource) for action, resource in calls]
    denied = [f"{decision}: {request}" for request, decision in evaluate(access, requests) if decision != ALLOWED]
    assert not denied, "\n".join(denied)
    # ... and nothing beyond: another stage's or an untagged name outside the prefix stays out of reach.
    outside = [Request(f"{logical} (cleanup)", role, "sagemaker:DeleteModel", f"{arn}:model/someone-elses-model"),
               Request(f"{logical} (cleanup)", role, "sagemaker:DeleteEndpoint", f"{arn}:endpoint/another-endpoint")]
    assert all(decision != ALLOWED for _, decision in evaluate(access, outside))


def test_the_bar_collectors_may_put_their_success_records_on_the_bus(synthesized_app: SynthesizedApp) -> None:
    """The book step's trigger: Lambda puts a bar collector's on-success record with the collector's role."""
    templates = stage_templates(synthesized_app, "dev")
    access = Access(Resolver(templates))
    puts = [r for r in lambda_requests(access) if r.action == "events:PutEvents"]
    assert len(puts) == 2 and all(r.resource.endswith(":event-bus/default") for r in puts)
    broken = _without_statement(templates, "-Collectors", "AWS::IAM::Policy", "events:PutEvents")
    assert sorted(d.split(": ", 1)[1].split(" on ")[0] for d in denials(broken)) == sorted(
        f"{r.who}: events:PutEvents" for r in puts)


def test_the_book_step_reads_models_only(templates: Templates) -> None:
    """Read-only on models/ of the artifacts bucket: no write there, no read elsewhere in the bucket."""
    access = Access(Resolver(templates))
    requests = [r for r in lambda_requests(access) if "(book_step)" in r.who]
    assert {r.action for r in requests} >= {"s3:GetObject", "s3:ListBucket", "secretsmanager:GetSecretValue"}
    get = next(r for r in requests if r.action == "s3:GetObject")
    bucket = get.resource.split(":::", 1)[1].split("/", 1)[0]
    outside = [Request(get.who, get.role_arn, "s3:PutObject", get.resource),
               Request(get.who, get.role_arn, "s3:GetObject", f"arn:aws:s3:::{bucket}/runs/r1/decision.json"),
               Request(get.who, get.role_arn, "s3:DeleteObject", get.resource)]
    assert all(decision != ALLOWED for _, decision in evaluate(access, outside))
