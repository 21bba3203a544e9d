"""Serving stack: the combiner Lambda, the Signal API (validation, keys, usage plan, logs, tracing, WAF), scaling."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Capture, Match, Template

from signal_engine.serving.schema import MAX_BATCH, SYMBOL_PATTERN, TIMEFRAME_PATTERN
from stacks.config import load_stage_config
from stacks.serving import experts_endpoint_name

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
DEV = load_stage_config("dev")
PROD = load_stage_config("prod")


def combiner(template: Template) -> dict[str, Any]:
    (function,) = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "combiner.handler.handler"}}
    ).values()
    return dict(function["Properties"])


def test_combiner_environment(serving_template: Template) -> None:
    props = combiner(serving_template)
    env = props["Environment"]["Variables"]
    assert json.loads(env["EXPERT_ENDPOINTS"]) == {
        e: experts_endpoint_name(DEV) for e in ("levels", "trend", "volatility", "news")
    }
    assert env["EXPERT_DEADLINE_MS"] == str(DEV.expert_deadline_ms)
    assert env["MAX_BATCH_REQUESTS"] == str(DEV.max_batch_requests)
    uri = json.dumps(env["MODEL_BUNDLE_URI"])
    assert "s3://" in uri and "/models/" in uri and "ArtifactsBucket" in uri
    assert "MySqlSecret" in json.dumps(env["SIGNAL_ENGINE_DATABASE_SECRET"])
    # the headlines a bundle with the text expert reads: DocumentDB's secret (read by the combiner's role)
    assert "DocDb" in json.dumps(env["SIGNAL_ENGINE_DOCUMENT_SECRET"])
    serving_template.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Sid": "NewsStoreSecret", "Action": ["secretsmanager:DescribeSecret",
                                                                "secretsmanager:GetSecretValue"]})])}})


def test_combiner_runs_in_the_vpc_inside_the_api_timeout(serving_template: Template) -> None:
    props = combiner(serving_template)
    assert props["Runtime"] == "python3.11"
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["Timeout"] < 29
    assert props["Timeout"] * 1000 > DEV.expert_deadline_ms
    assert "AppSecurityGroup" in json.dumps(props["VpcConfig"]["SecurityGroupIds"])


def test_combiner_may_invoke_only_the_experts_endpoint(serving_template: Template) -> None:
    serving_template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "sagemaker:InvokeEndpoint",
                                "Resource": {
                                    "Fn::Join": [
                                        "",
                                        Match.array_with([f":endpoint/{experts_endpoint_name(DEV).lower()}"]),
                                    ]
                                },
                            }
                        )
                    ]
                )
            }
        },
    )


def test_post_signals_requires_a_key_and_validates_the_body(serving_template: Template) -> None:
    serving_template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "POST",
            "ApiKeyRequired": True,
            "RequestValidatorId": {"Ref": Match.string_like_regexp("BodyValidator")},
            "RequestModels": {"application/json": {"Ref": Match.string_like_regexp("SignalRequestModel")}},
            "Integration": Match.object_like({"Type": "AWS_PROXY"}),
        },
    )
    serving_template.has_resource_properties(
        "AWS::ApiGateway::RequestValidator", {"ValidateRequestBody": True, "ValidateRequestParameters": True}
    )


def test_get_book_is_routed_to_the_combiner_with_iam_and_a_key(serving_template: Template) -> None:
    serving_template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "book"})
    serving_template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "GET",
            "AuthorizationType": "AWS_IAM",
            "ApiKeyRequired": True,
            "RequestParameters": {"method.request.querystring.name": False,
                                  "method.request.querystring.recent_bars": False},
            "Integration": Match.object_like({"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST"}),
        },
    )


def _deployed_routes(template: Template) -> dict[tuple[str, str], dict[str, Any]]:
    """(verb, path) -> the method's properties, the path built from each resource's PathPart up to the API's root."""
    resources = template.find_resources("AWS::ApiGateway::Resource")

    def path(resource_id: dict[str, Any]) -> str:
        if "Ref" not in resource_id:  # Fn::GetAtt [api, RootResourceId]
            return ""
        properties = resources[resource_id["Ref"]]["Properties"]
        return f"{path(properties['ParentId'])}/{properties['PathPart']}"

    return {(m["Properties"]["HttpMethod"], path(m["Properties"]["ResourceId"])): m["Properties"]
            for m in template.find_resources("AWS::ApiGateway::Method").values()}


def test_every_route_of_the_signal_api_is_deployed_to_the_combiner_with_iam_and_a_key(
        serving_template: Template) -> None:
    """The routes of docs/openapi.json (generated from signal_engine.serving.api) are the API Gateway methods:
    what `serve` answers locally answers on AWS too, behind IAM and the usage plan."""
    document = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    documented = {(verb.upper(), route) for route, verbs in document["paths"].items() for verb in verbs}
    deployed = _deployed_routes(serving_template)
    assert set(deployed) == documented
    (combiner_id,) = serving_template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "combiner.handler.handler"}})
    for route, method in deployed.items():
        assert method["AuthorizationType"] == "AWS_IAM" and method["ApiKeyRequired"] is True, route
        assert method["Integration"]["Type"] == "AWS_PROXY", route
        assert combiner_id in json.dumps(method["Integration"]["Uri"]), route
        assert "BodyValidator" in method["RequestValidatorId"]["Ref"], route


def test_the_batch_worker_runs_each_job_once_for_up_to_15_minutes_and_the_combiner_may_start_it(
        serving_template: Template) -> None:
    (worker_id, worker), = serving_template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "combiner.handler.batch_worker"}}).items()
    properties = worker["Properties"]
    assert properties["Timeout"] == 900
    env, combiner_env = properties["Environment"]["Variables"], combiner(serving_template)["Environment"]["Variables"]
    assert env["BATCH_JOB_TIMEOUT_S"] == combiner_env["BATCH_JOB_TIMEOUT_S"] == "900"
    assert env["BATCH_JOBS_URI"] == combiner_env["BATCH_JOBS_URI"]
    assert "signal-batches/" in json.dumps(env["BATCH_JOBS_URI"])
    assert combiner_env["BATCH_WORKER_FUNCTION"] == {"Ref": worker_id}
    serving_template.has_resource_properties("AWS::Lambda::EventInvokeConfig", {
        "FunctionName": {"Ref": worker_id}, "MaximumRetryAttempts": 0, "Qualifier": "$LATEST"})
    statements = [statement for policy in serving_template.find_resources("AWS::IAM::Policy").values()
                  for statement in policy["Properties"]["PolicyDocument"]["Statement"]
                  if statement.get("Sid") == "StartBatchJobs"]
    assert statements == [{"Sid": "StartBatchJobs", "Action": "lambda:InvokeFunction", "Effect": "Allow",
                           "Resource": {"Fn::GetAtt": [worker_id, "Arn"]}}]


def test_post_signals_batch_validates_its_body_with_the_pydantic_limits(serving_template: Template) -> None:
    deployed = _deployed_routes(serving_template)
    model_ref = deployed[("POST", "/signals/batch")]["RequestModels"]["application/json"]["Ref"]
    assert deployed[("POST", "/signals/batch/jobs")]["RequestModels"]["application/json"]["Ref"] == model_ref
    schema = serving_template.find_resources("AWS::ApiGateway::Model")[model_ref]["Properties"]["Schema"]
    assert schema["required"] == ["requests"] and schema["additionalProperties"] is False
    requests = schema["properties"]["requests"]
    assert (requests["minItems"], requests["maxItems"]) == (1, MAX_BATCH)
    assert requests["items"]["required"] == ["symbol"]
    assert set(requests["items"]["properties"]) == {"symbol", "timeframe", "as_of", "bars", "position"}


def test_request_model_matches_the_pydantic_request(serving_template: Template) -> None:
    schema = Capture()
    serving_template.has_resource_properties(
        "AWS::ApiGateway::Model", {"ContentType": "application/json", "Schema": schema}
    )
    body = schema.as_object()
    assert body["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert body["required"] == ["symbol"]
    assert body["additionalProperties"] is False
    assert set(body["properties"]) == {"symbol", "timeframe", "as_of", "bars", "position"}
    assert body["properties"]["symbol"]["pattern"] == SYMBOL_PATTERN
    assert body["properties"]["timeframe"]["pattern"] == TIMEFRAME_PATTERN
    symbol = re.compile(SYMBOL_PATTERN)
    assert symbol.match("SPY") and symbol.match("BRK.B") and not symbol.match("DROP TABLE")


def test_usage_plan_throttles_and_caps_each_key(serving_template: Template) -> None:
    serving_template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "Throttle": {"RateLimit": DEV.api_rate_limit, "BurstLimit": DEV.api_burst_limit},
            "Quota": {"Limit": DEV.api_quota_per_day, "Period": "DAY"},
            "ApiStages": [Match.object_like({"Stage": {"Ref": Match.string_like_regexp("SignalApiDeploymentStage")}})],
        },
    )
    serving_template.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    serving_template.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)


def test_stage_traces_and_writes_access_logs(serving_template: Template) -> None:
    serving_template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "dev",
            "TracingEnabled": True,
            "MethodSettings": [
                Match.object_like({"LoggingLevel": "INFO", "MetricsEnabled": True, "DataTraceEnabled": False})
            ],
        },
    )
    (stage,) = serving_template.find_resources("AWS::ApiGateway::Stage").values()
    access_logs = stage["Properties"]["AccessLogSetting"]
    assert "ApiAccessLogs" in json.dumps(access_logs["DestinationArn"])
    assert "$context.requestId" in access_logs["Format"] and "$context.status" in access_logs["Format"]


def test_waf_guards_the_stage(serving_template: Template) -> None:
    serving_template.has_resource_properties(
        "AWS::WAFv2::WebACL",
        {
            "Scope": "REGIONAL",
            "Rules": Match.array_with(
                [
                    Match.object_like({"Name": "CommonRules"}),
                    Match.object_like({"Name": "RatePerIp", "Action": {"Block": {}}}),
                ]
            ),
        },
    )
    serving_template.resource_count_is("AWS::WAFv2::WebACLAssociation", 1)


def test_dev_does_not_register_scaling_before_the_endpoint_exists(serving_template: Template) -> None:
    serving_template.resource_count_is("AWS::ApplicationAutoScaling::ScalableTarget", 0)


def test_autoscaling_tracks_invocations_per_instance(prod_serving_template: Template) -> None:
    prod_serving_template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "ResourceId": f"endpoint/{experts_endpoint_name(PROD)}/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "MinCapacity": PROD.expert_min_instances,
            "MaxCapacity": PROD.expert_max_instances,
        },
    )
    prod_serving_template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {
                    "TargetValue": PROD.expert_invocations_per_instance,
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                    },
                }
            )
        },
    )


@pytest.mark.parametrize(
    ("namespace", "metric"),
    [
        ("AWS/ApiGateway", "5XXError"),
        ("AWS/ApiGateway", "Latency"),
        ("AWS/Lambda", "Errors"),
        ("AWS/SageMaker", "Invocation5XXErrors"),
    ],
)
def test_alarms_notify_the_topic(serving_template: Template, namespace: str, metric: str) -> None:
    serving_template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"Namespace": namespace, "MetricName": metric, "AlarmActions": [Match.any_value()],
         "OKActions": [Match.any_value()]},
    )


def test_dashboard_shows_api_endpoint_and_signals_served(serving_template: Template) -> None:
    (dashboard,) = serving_template.find_resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "SignalEngine-Dev-Serving"
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in ("4XXError", "5XXError", "Latency", "ModelLatency", "Invocations", "SignalsServed"):
        assert metric in body
    assert experts_endpoint_name(DEV) in body
