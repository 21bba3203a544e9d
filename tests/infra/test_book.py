"""Book stack: the book step as a container-image Lambda in the VPC, triggered after the bar collectors succeed,
with retries, a DLQ, least privilege, alarms (failed, missed, waiting) and a dashboard."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aws_cdk.assertions import Capture, Match, Template

from stacks.book import BUILD_CONTEXT, CA_FILE, DESTINATION_SUCCESS, HANDLER, STEP_REQUEST_SOURCE
from stacks.collectors import BAR_COLLECTORS, pascal
from stacks.config import COLLECTORS, load_stage_config
from stacks.serving import experts_endpoint_name

if TYPE_CHECKING:
    from tests.infra.conftest import SynthesizedApp

pytestmark = pytest.mark.infra

DEV = load_stage_config("dev")


def book_step(template: Template) -> Mapping[str, Any]:
    (function,) = [f for f in template.find_resources("AWS::Lambda::Function").values()
                   if f["Properties"].get("PackageType") == "Image"]
    return function


def test_the_step_is_a_container_image_function_in_the_vpc(book_template: Template) -> None:
    props = book_step(book_template)["Properties"]
    assert props["ImageConfig"] == {"Command": [HANDLER]}
    assert "Runtime" not in props and "Handler" not in props
    assert props["Architectures"] == ["x86_64"]
    assert props["MemorySize"] == DEV.book_step_memory_mb
    assert props["Timeout"] == DEV.book_step_timeout_seconds
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert len(props["VpcConfig"]["SubnetIds"]) == DEV.max_azs
    assert "AppSecurityGroup" in json.dumps(props["VpcConfig"]["SecurityGroupIds"])
    assert "DeadLetterQueue" in json.dumps(props["DeadLetterConfig"])
    assert "KmsKeyArn" in props


def test_environment_names_the_registry_the_secret_and_the_ca_bundle(book_template: Template) -> None:
    variables = book_step(book_template)["Properties"]["Environment"]["Variables"]
    uri = json.dumps(variables["MODEL_BUNDLE_URI"])
    assert "s3://" in uri and "/models/" in uri and "ArtifactsBucket" in uri
    assert "Secret" in json.dumps(variables["SIGNAL_ENGINE_DATABASE_SECRET"])
    assert variables["SIGNAL_ENGINE_DATABASE_CA_FILE"] == CA_FILE
    dockerfile = (Path(__file__).resolve().parents[2] / "containers" / "book_step" / "Dockerfile").read_text()
    assert f" {CA_FILE}\n" in dockerfile, "the image puts the RDS CA bundle where the function looks for it"
    assert variables["POWERTOOLS_SERVICE_NAME"] == "signal-engine-book"


def test_a_news_slot_bundle_reads_documentdb_and_asks_the_text_expert_on_the_experts_endpoint(
        book_template: Template) -> None:
    variables = book_step(book_template)["Properties"]["Environment"]["Variables"]
    assert json.loads(variables["EXPERT_ENDPOINTS"]) == {"news": experts_endpoint_name(DEV)}
    assert "DocDb" in json.dumps(variables["SIGNAL_ENGINE_DOCUMENT_SECRET"])
    assert variables["SIGNAL_ENGINE_DOCUMENT_CA_FILE"] == CA_FILE
    statements = [s for p in book_template.find_resources("AWS::IAM::Policy").values()
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    (invoke,) = [s for s in statements if s["Action"] == "sagemaker:InvokeEndpoint"]
    assert f":endpoint/{experts_endpoint_name(DEV).lower()}" in json.dumps(invoke["Resource"])
    (news,) = [s for s in statements if s.get("Sid") == "NewsStoreSecret"]
    assert "DocDb" in json.dumps(news["Resource"])


def test_async_invocations_retry_twice_then_go_to_the_dlq(book_template: Template) -> None:
    book_template.has_resource_properties("AWS::Lambda::EventInvokeConfig", {
        "MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 6 * 3600, "Qualifier": "$LATEST"})


def test_the_step_runs_after_each_bar_collector_succeeds(book_template: Template,
                                                         collectors_template: Template) -> None:
    # Each bar collector (and no other) puts its on-success record on the default bus ...
    configs = collectors_template.find_resources("AWS::Lambda::EventInvokeConfig")
    with_destination = sorted(c["Properties"]["FunctionName"]["Ref"] for c in configs.values()
                              if "OnSuccess" in c["Properties"].get("DestinationConfig", {}))
    assert [name[:-8] for name in with_destination] == sorted(pascal(name) for name in BAR_COLLECTORS)
    destination = json.dumps(next(c for c in configs.values() if "DestinationConfig" in c["Properties"])
                             ["Properties"]["DestinationConfig"])
    assert ":event-bus/default" in destination
    # ... and the book stack's rule matches exactly those records and targets the step (retries, DLQ).
    pattern = Capture()
    book_template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": pattern,
        "Targets": [Match.object_like({
            "DeadLetterConfig": Match.any_value(),
            "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 6 * 3600}})],
    })
    rules = [r["Properties"]["EventPattern"] for r in book_template.find_resources("AWS::Events::Rule").values()]
    (after,) = [p for p in rules if p["source"] == ["lambda"]]
    assert after["detail-type"] == [DESTINATION_SUCCESS]
    prefixes = after["detail"]["requestContext"]["functionArn"]
    assert len(prefixes) == len(BAR_COLLECTORS)
    text = json.dumps(prefixes)
    assert all(f"{pascal(name)}" in text for name in BAR_COLLECTORS)
    assert not any(pascal(name) in text for name in COLLECTORS if name not in BAR_COLLECTORS)
    assert all(list(p) == ["prefix"] for p in prefixes), prefixes
    (request,) = [p for p in rules if p["source"] == [STEP_REQUEST_SOURCE]]
    assert request["detail-type"] == ["Step Book"]


def test_the_role_reads_models_and_the_secrets_and_invokes_the_endpoint_only(book_template: Template,
                                                                            storage_template: Template) -> None:
    role = Capture()
    book_template.has_resource_properties("AWS::Lambda::Function", {"PackageType": "Image", "Role": role})
    logical = role.as_object()["Fn::GetAtt"][0]
    policies = [p for p in book_template.find_resources("AWS::IAM::Policy").values()
                if {"Ref": logical} in p["Properties"]["Roles"]]
    actions = {a for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "sqs:SendMessage",
                       "kms:Decrypt", "xray:PutTraceSegments", "xray:PutTelemetryRecords", "sagemaker:InvokeEndpoint"}
    managed = book_template.find_resources("AWS::IAM::Role")[logical]["Properties"]["ManagedPolicyArns"]
    assert any("BookStepModelsRead" in json.dumps(arn) for arn in managed)
    (models,) = [p for name, p in storage_template.find_resources("AWS::IAM::ManagedPolicy").items()
                 if name.startswith("BookStepModelsRead")]
    statements = models["Properties"]["PolicyDocument"]["Statement"]
    objects = next(s for s in statements if s["Sid"] == "Objects")
    assert objects["Action"] == "s3:GetObject" and "/models/*" in json.dumps(objects["Resource"])


def test_alarms_cover_failed_missed_and_waiting_steps(book_template: Template) -> None:
    alarms = {a["Properties"].get("MetricName"): a["Properties"]
              for a in book_template.find_resources("AWS::CloudWatch::Alarm").values()}
    assert alarms["Errors"]["Threshold"] == 1
    assert alarms["ApproximateNumberOfMessagesVisible"]["Threshold"] == 1
    missed = alarms["BooksStepped"]
    assert missed["ComparisonOperator"] == "LessThanThreshold" and missed["Threshold"] == 1
    assert missed["TreatMissingData"] == "breaching"
    assert missed["Period"] == 3600
    assert missed["EvaluationPeriods"] == missed["DatapointsToAlarm"] == DEV.book_step_missed_after_hours
    assert missed["Dimensions"] == [{"Name": "service", "Value": "signal-engine-book"}]
    waiting = alarms["SymbolsWaiting"]
    assert waiting["Statistic"] == "Minimum" and waiting["Period"] == 86400
    assert waiting["EvaluationPeriods"] == waiting["DatapointsToAlarm"] == DEV.book_waiting_alarm_days
    assert waiting["TreatMissingData"] == "notBreaching"
    for alarm in alarms.values():
        assert alarm["AlarmActions"] and alarm["OKActions"]


def test_the_missed_step_period_comes_from_the_stage_config(prod_book_template: Template) -> None:
    """Prod's stage config takes 100 hours from the shared app's context (tests/infra/conftest.py), not the 80 of
    the defaults."""
    assert load_stage_config("prod").book_step_missed_after_hours == 80
    (alarm,) = [a["Properties"] for a in prod_book_template.find_resources("AWS::CloudWatch::Alarm").values()
                if a["Properties"].get("MetricName") == "BooksStepped"]
    assert alarm["EvaluationPeriods"] == 100


@pytest.mark.parametrize(("value", "message"), [
    ({"book_step_missed_after_hours": 200}, "book_step_missed_after_hours must be between 24 and 168"),
    ({"book_step_memory_mb": 512}, "book_step_memory_mb must be between 1024"),
    ({"book_step_timeout_seconds": 901}, "book_step_timeout_seconds must be between 60 and 900"),
    ({"book_waiting_alarm_days": 0}, "book_waiting_alarm_days must be between 1 and 7"),
])
def test_bad_book_settings_are_rejected_with_the_key(value: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_stage_config("dev", value)


def test_dashboard_shows_the_book_step(book_template: Template) -> None:
    (dashboard,) = book_template.find_resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "SignalEngine-Dev-Book"
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in ("BarsStepped", "BooksStepped", "SymbolsWaiting", "SymbolsEnded", "StepFailures", "Duration",
                   "Errors", "ApproximateNumberOfMessagesVisible"):
        assert metric in body


def test_the_image_is_an_asset_built_at_deploy_time(synthesized_app: SynthesizedApp) -> None:
    """Synthesis stages the build context (no Docker); cdk-assets builds and pushes the image at deploy."""
    (manifest,) = sorted(Path(synthesized_app.outdir).rglob("SignalEngineDevBook*.assets.json"))
    (image,) = json.loads(manifest.read_text())["dockerImages"].values()
    assert image["source"]["dockerFile"] == "containers/book_step/Dockerfile"
    assert image["source"]["platform"] == "linux/amd64"
    staged = manifest.parent / image["source"]["directory"]
    files = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    tops = {f.split("/")[0] for f in files} - {".dockerignore"}
    assert tops == {path.split("/")[0] for path in BUILD_CONTEXT}
    assert "lambda_src/book_step/handler.py" in files and "containers/book_step/Dockerfile" in files
    assert not [f for f in files if f.startswith(("lambda_src/collectors", "lambda_src/combiner"))]
    assert not [f for f in files if "__pycache__" in f]
