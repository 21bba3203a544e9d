"""Collectors stack: ten functions in the VPC, schedules, retries, DLQ, idempotency table, alarms, least privilege."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Capture, Match, Template

from stacks.collectors import DATASETS_BARS_PREFIX, EXPORT_BARS, pascal
from stacks.config import COLLECTORS, load_stage_config

pytestmark = pytest.mark.infra

DEV = load_stage_config("dev")
PROD = load_stage_config("prod")
TOPIC_OUTPUT = {"Fn::GetStackOutput": Match.object_like({"OutputName": Match.string_like_regexp("AlarmTopic")})}


def functions(template: Template) -> dict[str, Any]:
    """The collector functions by handler (CDK's own helper functions have other handlers; the bars export is apart)."""
    found = template.find_resources("AWS::Lambda::Function")
    return {
        f["Properties"]["Handler"]: f
        for f in found.values()
        if str(f["Properties"].get("Handler", "")).startswith("collectors.")
        and f["Properties"]["Handler"] != f"collectors.{EXPORT_BARS}.handler"
    }


def test_one_function_per_collector_module(collectors_template: Template) -> None:
    handlers = functions(collectors_template)
    assert sorted(handlers) == sorted(f"collectors.{name}.handler" for name in COLLECTORS)
    for function in handlers.values():
        props = function["Properties"]
        assert props["Runtime"] == "python3.11"
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["MemorySize"] == DEV.collector_memory_mb
        assert props["Timeout"] == DEV.collector_timeout_seconds
        assert "ReservedConcurrentExecutions" not in props  # dev reserves none (new accounts' quota is 10)


def test_functions_run_in_the_app_subnets_with_the_app_security_group(collectors_template: Template) -> None:
    for function in functions(collectors_template).values():
        vpc = function["Properties"]["VpcConfig"]
        assert len(vpc["SubnetIds"]) == DEV.max_azs
        assert "AppSecurityGroup" in json.dumps(vpc["SecurityGroupIds"])


def test_environment_names_the_stores_and_the_idempotency_table(collectors_template: Template) -> None:
    env = Capture()
    collectors_template.has_resource_properties(
        "AWS::Lambda::Function", {"Handler": "collectors.yahoo_bars.handler", "Environment": {"Variables": env}}
    )
    variables = env.as_object()
    assert variables["SYMBOLS"] == ",".join(DEV.symbols)
    assert variables["IDEMPOTENCY_TABLE"]["Ref"].startswith("IdempotencyTable")
    for key in ("SIGNAL_ENGINE_DATABASE_SECRET", "SIGNAL_ENGINE_DOCUMENT_SECRET"):
        assert "Secret" in json.dumps(variables[key])
    # The test packages carry no CA bundle, so no function points at one (lambda_packages.ca_bundle_environment).
    assert not {"SIGNAL_ENGINE_DOCUMENT_CA_FILE", "SIGNAL_ENGINE_DATABASE_CA_FILE"} & set(variables)
    store = json.dumps(variables["SIGNAL_ENGINE_OBJECT_STORE"])
    assert store.startswith('{"Fn::Join"') and "s3://" in store and "/raw" in store and "RawBucket" in store


@pytest.mark.parametrize("name", COLLECTORS)
def test_each_collector_runs_on_its_schedule_with_retries_and_a_dlq(collectors_template: Template, name: str) -> None:
    collectors_template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": DEV.collector_schedules[name],
            "State": "ENABLED",
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Fn::GetAtt": [Match.string_like_regexp(f"^{pascal(name)}[0-9A-F]{{8}}$"), "Arn"]},
                        "DeadLetterConfig": {"Arn": {"Fn::GetAtt": [Match.string_like_regexp("^DeadLetterQueue"),
                                                                    "Arn"]}},
                        "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
                    }
                )
            ],
        },
    )


def test_end_of_day_collectors_run_after_the_us_close_on_weekdays() -> None:
    for name in ("yahoo_bars", "nasdaq_bars", "yahoo_options"):
        _minute, hour, _, _, weekdays, _ = DEV.collector_schedules[name].removeprefix("cron(").rstrip(")").split()
        assert weekdays == "MON-FRI"
        assert int(hour) >= 21  # the close is 20:00 UTC (summer) or 21:00 UTC (winter)
    assert "SAT" in DEV.collector_schedules["yahoo_fundamentals"]
    assert DEV.collector_schedules["yahoo_news"].startswith("cron(0 * ")  # hourly, every day


def test_failed_async_invocations_retry_then_go_to_the_dlq(collectors_template: Template) -> None:
    for function in functions(collectors_template).values():
        assert function["Properties"]["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0].startswith("DeadLetterQueue")
    configs = collectors_template.find_resources(
        "AWS::Lambda::EventInvokeConfig",
        {"Properties": {"MaximumRetryAttempts": DEV.collector_retry_attempts, "MaximumEventAgeInSeconds": 3600}},
    )
    assert len(configs) == len(COLLECTORS) + 1  # and the bars export


def test_dead_letter_queue_is_encrypted_and_tls_only(collectors_template: Template) -> None:
    collectors_template.has_resource_properties(
        "AWS::SQS::Queue", {"SqsManagedSseEnabled": True, "MessageRetentionPeriod": 14 * 24 * 3600}
    )
    collectors_template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )


def test_idempotency_table(collectors_template: Template) -> None:
    collectors_template.has_resource_properties(
        "AWS::DynamoDB::GlobalTable",
        {
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
            "BillingMode": "PAY_PER_REQUEST",
            "SSESpecification": {"SSEEnabled": True},
            "Replicas": [
                Match.object_like(
                    {"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}}
                )
            ],
        },
    )


@pytest.mark.parametrize(
    ("metric", "namespace"),
    [("Errors", None), ("Throttles", None), ("ApproximateNumberOfMessagesVisible", "AWS/SQS")],
)
def test_alarms_notify_the_topic(collectors_template: Template, metric: str, namespace: str | None) -> None:
    alarms = collectors_template.find_resources("AWS::CloudWatch::Alarm")
    matching = [a for a in alarms.values() if f'"MetricName": "{metric}"' in json.dumps(a)]
    assert matching, f"no alarm on {metric}"
    props = matching[0]["Properties"]
    assert json.dumps(props["AlarmActions"]).count("AlarmTopic") == 1
    assert json.dumps(props["OKActions"]).count("AlarmTopic") == 1
    if namespace:
        assert props["Namespace"] == namespace


def test_dashboard_shows_runs_failures_and_the_dlq(collectors_template: Template) -> None:
    (dashboard,) = collectors_template.find_resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "SignalEngine-Dev-Collectors"
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for text in ("Invocations", "RowsWritten", "CollectionFailures", "ApproximateNumberOfMessagesVisible"):
        assert text in body


def statements(template: Template) -> list[dict[str, Any]]:
    """Every statement of every inline policy in the template."""
    found = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found


def test_role_grants_no_wildcard_actions(collectors_template: Template) -> None:
    actions = [a for s in statements(collectors_template) for a in ([s["Action"]] if isinstance(s["Action"], str)
                                                                        else s["Action"])]
    assert actions
    assert all("*" not in action for action in actions), actions
    assert "dynamodb:PutItem" in actions and "sqs:SendMessage" in actions


def test_raw_payload_policy_is_limited_to_the_raw_prefix(storage_template: Template) -> None:
    policy = Capture()
    storage_template.has_resource_properties(
        "AWS::IAM::ManagedPolicy",
        {"Description": Match.string_like_regexp("^signal-engine collectors"), "PolicyDocument": policy},
    )
    objects = next(s for s in policy.as_object()["Statement"] if s["Sid"] == "Objects")
    assert sorted(objects["Action"]) == ["s3:GetObject", "s3:PutObject"]
    assert objects["Resource"]["Fn::Join"][1][-1] == "/raw/*"


def test_prod_reserves_no_concurrency_by_default(prod_collectors_template: Template) -> None:
    # A reservation needs the account's Lambda concurrency quota raised first (new accounts have 10): opt-in.
    assert PROD.collector_reserved_concurrency == 0
    for function in functions(prod_collectors_template).values():
        assert "ReservedConcurrentExecutions" not in function["Properties"]


def export_function(template: Template) -> dict[str, Any]:
    (function,) = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": f"collectors.{EXPORT_BARS}.handler"}}
    ).values()
    return dict(function)


def test_the_bars_export_writes_the_training_input_to_the_datasets_bucket(collectors_template: Template) -> None:
    props = export_function(collectors_template)["Properties"]
    variables = props["Environment"]["Variables"]
    assert (variables["SYMBOLS"], variables["TIMEFRAME"]) == (",".join(DEV.symbols), "1d")
    assert "Secret" in json.dumps(variables["SIGNAL_ENGINE_DATABASE_SECRET"])
    # the stored news too (news/<SYMBOL>.jsonl for the news slot's training), read from DocumentDB
    assert variables["EXPORT_NEWS"] == "true"
    assert "DocDb" in json.dumps(variables["SIGNAL_ENGINE_DOCUMENT_SECRET"])
    store = json.dumps(variables["SIGNAL_ENGINE_DATASETS_STORE"])
    assert store.startswith('{"Fn::Join"') and '"s3://"' in store and "DatasetsBucket" in store
    assert not {"IDEMPOTENCY_TABLE", "SIGNAL_ENGINE_OBJECT_STORE"} & set(variables)
    assert len(props["VpcConfig"]["SubnetIds"]) == DEV.max_azs
    assert "AppSecurityGroup" in json.dumps(props["VpcConfig"]["SecurityGroupIds"])
    assert props["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0].startswith("DeadLetterQueue")
    assert props["Role"]["Fn::GetAtt"][0].startswith("ExportRole")


def test_the_bars_export_runs_after_the_bar_collectors_and_before_training(collectors_template: Template) -> None:
    collectors_template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": DEV.bars_export_schedule,
            "State": "ENABLED",
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Fn::GetAtt": [Match.string_like_regexp("^ExportBars[0-9A-F]{8}$"), "Arn"]},
                        "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
                    }
                )
            ],
        },
    )

    def minutes(expression: str) -> int:
        minute, hour, *_ = expression.removeprefix("cron(").rstrip(")").split()
        return int(hour) * 60 + int(minute)

    for config in (DEV, PROD):
        export = config.bars_export_schedule
        assert export.removeprefix("cron(").split()[4] == "MON-FRI"
        last_bars = max(minutes(config.collector_schedules[n]) for n in ("yahoo_bars", "nasdaq_bars"))
        assert minutes(export) >= last_bars + 30  # the collectors' timeout and first retry fit in between
        assert "SAT" in config.train_schedule  # Friday's export is in place before the weekly run


def test_the_bars_export_role_reads_only_the_two_store_secrets(collectors_template: Template) -> None:
    (role_id,) = collectors_template.find_resources(
        "AWS::IAM::Role", {"Properties": {"Description": Match.string_like_regexp("^signal-engine bars export")}}
    )
    policies = [
        p for p in collectors_template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    found = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    secret = next(s for s in found if s.get("Sid") == "StoreSecret")
    resources = json.dumps(secret["Resource"])
    assert len(secret["Resource"]) == 2 and "MySql" in resources and "DocDb" in resources  # bars and news
    assert sorted(secret["Action"]) == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    assert not any("dynamodb" in json.dumps(s["Action"]) or "s3:" in json.dumps(s["Action"]) for s in found)
    role = collectors_template.find_resources("AWS::IAM::Role")[role_id]
    arns = json.dumps(role["Properties"]["ManagedPolicyArns"])
    assert "ExportBarsDatasets" in arns and "ExportNewsDatasets" in arns and "CollectorsRawPayloads" not in arns


def test_the_bars_export_may_only_get_and_put_objects_under_bars(storage_template: Template) -> None:
    policy = Capture()
    storage_template.has_resource_properties(
        "AWS::IAM::ManagedPolicy",
        {"Description": Match.string_like_regexp("^signal-engine bars export: write the training input CSVs"),
         "PolicyDocument": policy},
    )
    by_sid = {s["Sid"]: s for s in policy.as_object()["Statement"]}
    assert sorted(by_sid["Objects"]["Action"]) == ["s3:GetObject", "s3:PutObject"]
    assert by_sid["Objects"]["Resource"]["Fn::Join"][1][-1] == f"/{DATASETS_BARS_PREFIX}/*"
    assert "DatasetsBucket" in json.dumps(by_sid["Objects"]["Resource"])
    assert by_sid["List"]["Condition"] == {"StringLike": {"s3:prefix": [f"{DATASETS_BARS_PREFIX}/*",
                                                                       DATASETS_BARS_PREFIX]}}


def test_the_bars_export_may_only_get_and_put_objects_under_news_for_the_news(storage_template: Template) -> None:
    policy = Capture()
    storage_template.has_resource_properties(
        "AWS::IAM::ManagedPolicy",
        {"Description": Match.string_like_regexp("^signal-engine bars export: write the stored news"),
         "PolicyDocument": policy},
    )
    by_sid = {s["Sid"]: s for s in policy.as_object()["Statement"]}
    assert sorted(by_sid["Objects"]["Action"]) == ["s3:GetObject", "s3:PutObject"]
    assert by_sid["Objects"]["Resource"]["Fn::Join"][1][-1] == "/news/*"
    assert by_sid["List"]["Condition"] == {"StringLike": {"s3:prefix": ["news/*", "news"]}}


def test_missing_symbols_of_the_export_raise_an_alarm(collectors_template: Template) -> None:
    alarms = collectors_template.find_resources("AWS::CloudWatch::Alarm")
    (alarm,) = [a for a in alarms.values() if '"MetricName": "SymbolsMissing"' in json.dumps(a)]
    props = alarm["Properties"]
    (query,) = props["Metrics"]  # a labelled metric renders as a metric query
    metric = query["MetricStat"]["Metric"]
    assert (metric["Namespace"], props["Threshold"], props["TreatMissingData"]) == ("SignalEngine", 1, "notBreaching")
    assert metric["Dimensions"] == [{"Name": "service", "Value": "signal-engine-collectors"}]
    assert query["MetricStat"]["Stat"] == "Sum"
    assert json.dumps(props["AlarmActions"]).count("AlarmTopic") == 1
    errors = [a for a in alarms.values() if '"MetricName": "Errors"' in json.dumps(a)
              and "ExportBars" in json.dumps(a["Properties"])]
    assert len(errors) == 1 and errors[0]["Properties"]["Threshold"] == 1


def test_a_disagreement_between_sources_raises_an_alarm(collectors_template: Template) -> None:
    alarms = collectors_template.find_resources("AWS::CloudWatch::Alarm")
    (alarm,) = [a for a in alarms.values() if '"MetricName": "BarDisagreements"' in json.dumps(a)]
    props = alarm["Properties"]
    (query,) = props["Metrics"]
    metric = query["MetricStat"]["Metric"]
    assert (metric["Namespace"], props["Threshold"], props["TreatMissingData"]) == ("SignalEngine", 1, "notBreaching")
    assert metric["Dimensions"] == [{"Name": "service", "Value": "signal-engine-collectors"}]
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert json.dumps(props["AlarmActions"]).count("AlarmTopic") == 1
