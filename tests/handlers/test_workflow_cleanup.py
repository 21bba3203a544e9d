"""The training workflow's cleanup custom resource handler against moto's SageMaker (server mode): Delete removes
this stage's endpoint and the endpoint configs and models tagged with it, keeps everything else, and can run
again; Create and Update touch nothing."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from step_functions.endpoint_cleanup import NAME_PREFIX, TAG_KEY
from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT, moto_server

handler = importlib.import_module("lambda_src.workflow_cleanup.handler")

ENDPOINT, OTHER_ENDPOINT = "signal-engine-experts-dev", "signal-engine-experts-prod"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/signal-engine-inference:1"


@pytest.fixture()
def sagemaker() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in FAKE_AWS_ENVIRONMENT.items():
            mp.setenv(key, value)
        with moto_server() as endpoint:
            mp.setenv("AWS_ENDPOINT_URL", endpoint)  # what the handler's own boto3 client talks to
            client = boto3.client("sagemaker", endpoint_url=endpoint, region_name="us-east-1")
            yield client


def deploy(sagemaker: Any, name: str, endpoint: str | None, *, serve: bool = False) -> None:
    """A model and endpoint config as the workflow makes them (tagged with their endpoint, or not at all)."""
    tags = [{"Key": TAG_KEY, "Value": endpoint}] if endpoint else []
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE,
                           PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://artifacts/m.tar.gz"}, Tags=tags)
    sagemaker.create_endpoint_config(EndpointConfigName=name, Tags=tags, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    if serve and endpoint:
        sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=name)


def event(request: str) -> dict[str, Any]:
    return {"RequestType": request, "PhysicalResourceId": "workflow-cleanup", "ResourceProperties": {
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:provider", "EndpointName": ENDPOINT,
        "NamePrefix": NAME_PREFIX, "TagKey": TAG_KEY, "TagValue": ENDPOINT}}


def names(sagemaker: Any) -> tuple[set[str], set[str], set[str]]:
    return ({m["ModelName"] for m in sagemaker.list_models()["Models"]},
            {c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]},
            {e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]})


def test_delete_removes_this_stages_endpoint_configs_and_models_only(sagemaker: Any) -> None:
    deploy(sagemaker, "signal-engine-1111", ENDPOINT)
    deploy(sagemaker, "signal-engine-2222", ENDPOINT, serve=True)
    deploy(sagemaker, "signal-engine-3333", OTHER_ENDPOINT, serve=True)  # another stage in the same account
    deploy(sagemaker, "signal-engine-4444", None)  # made by hand, untagged
    deploy(sagemaker, "someone-else-5555", ENDPOINT)  # tagged, but not a workflow name
    assert handler.on_event(event("Delete")) == {"PhysicalResourceId": "workflow-cleanup"}
    kept = {"signal-engine-3333", "signal-engine-4444", "someone-else-5555"}
    assert names(sagemaker) == (kept, kept, {OTHER_ENDPOINT})


def test_delete_twice_or_with_nothing_to_delete_succeeds(sagemaker: Any) -> None:
    deploy(sagemaker, "signal-engine-1111", ENDPOINT, serve=True)
    handler.on_event(event("Delete"))
    handler.on_event(event("Delete"))
    assert names(sagemaker) == (set(), set(), set())


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_create_and_update_touch_nothing(sagemaker: Any, request_type: str) -> None:
    deploy(sagemaker, "signal-engine-1111", ENDPOINT, serve=True)
    assert handler.on_event(event(request_type))["PhysicalResourceId"] == "workflow-cleanup"
    assert names(sagemaker) == ({"signal-engine-1111"}, {"signal-engine-1111"}, {ENDPOINT})


def test_missing_properties_are_named() -> None:
    with pytest.raises(ValueError, match="EndpointName"):
        handler.on_event({"RequestType": "Delete", "ResourceProperties": {"NamePrefix": "x"}})
