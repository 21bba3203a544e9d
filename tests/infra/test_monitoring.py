"""Monitoring stack: encrypted alarm topic, storage dashboard and alarms; the OpsDashboard helper."""

from __future__ import annotations

import json

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template

from stacks.config import load_stage_config
from stacks.constructs.ops_dashboard import OpsDashboard

pytestmark = pytest.mark.infra

DEV = load_stage_config("dev")
TOPIC_REF = {"Ref": Match.string_like_regexp("^AlarmTopic")}


def test_alarm_topic_is_kms_encrypted(monitoring_template: Template) -> None:
    monitoring_template.has_resource_properties(
        "AWS::SNS::Topic",
        {"KmsMasterKeyId": {"Fn::GetAtt": [Match.string_like_regexp("^AlarmTopicKey"), "Arn"]}},
    )
    monitoring_template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_cloudwatch_may_use_the_topic_key(monitoring_template: Template) -> None:
    monitoring_template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                            }
                        )
                    ]
                )
            }
        },
    )


def test_alarm_topic_enforces_ssl(monitoring_template: Template) -> None:
    monitoring_template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            }
        },
    )


@pytest.mark.parametrize(
    ("namespace", "metric", "operator", "threshold"),
    [
        ("AWS/RDS", "CPUUtilization", "GreaterThanThreshold", DEV.cpu_alarm_percent),
        ("AWS/RDS", "FreeStorageSpace", "LessThanThreshold", DEV.free_storage_alarm_gib * 1024**3),
        ("AWS/DocDB", "CPUUtilization", "GreaterThanThreshold", DEV.cpu_alarm_percent),
    ],
)
def test_alarm_notifies_the_topic(
    monitoring_template: Template, namespace: str, metric: str, operator: str, threshold: int
) -> None:
    monitoring_template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": namespace,
            "MetricName": metric,
            "ComparisonOperator": operator,
            "Threshold": threshold,
            "AlarmActions": [TOPIC_REF],
            "OKActions": [TOPIC_REF],
        },
    )


def test_exactly_the_storage_alarms(monitoring_template: Template) -> None:
    monitoring_template.resource_count_is("AWS::CloudWatch::Alarm", 3)


def test_dashboard_shows_databases_and_buckets(monitoring_template: Template) -> None:
    dashboards = monitoring_template.find_resources("AWS::CloudWatch::Dashboard")
    assert len(dashboards) == 1
    (dashboard,) = dashboards.values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert dashboard["Properties"]["DashboardName"] == "SignalEngine-Dev-Storage"
    for metric in (
        "CPUUtilization",
        "DatabaseConnections",
        "FreeStorageSpace",
        "BucketSizeBytes",
        "NumberOfObjects",
    ):
        assert metric in body
    assert "AWS/DocDB" in body
    assert body.count("BucketSizeBytes") == 3
    assert '\\"type\\":\\"alarm\\"' in body  # the alarm status widget


def test_ops_dashboard_alarm_goes_to_topic_on_alarm_and_ok() -> None:
    stack = Stack(App(), "Bare")
    topic = sns.Topic(stack, "Topic")
    ops = OpsDashboard(stack, "Ops", alarm_topic=topic, dashboard_name="Bare")
    metric = cloudwatch.Metric(namespace="Test", metric_name="Errors")
    alarm = ops.add_alarm(
        "ErrorsAlarm",
        metric=metric,
        threshold=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        description="Any error",
        evaluation_periods=1,
    )
    ops.add_section("Errors", ops.graph("Errors", [metric], thresholds=[alarm]))
    ops.add_alarm_status()

    template = Template.from_stack(stack)
    topic_ref = {"Ref": Match.string_like_regexp("^Topic")}
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmDescription": "Any error",
            "AlarmActions": [topic_ref],
            "OKActions": [topic_ref],
            "Threshold": 1,
        },
    )
    body = json.dumps(template.find_resources("AWS::CloudWatch::Dashboard"))
    assert "## Errors" in body
    assert '\\"type\\":\\"alarm\\"' in body
    assert ops.alarms == [alarm]
