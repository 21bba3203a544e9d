"""The training workflow's cleanup on ``cdk destroy`` (a CloudFormation custom resource behind a CDK Provider).

Create and Update do nothing. Delete removes the experts' endpoint (by name) and every endpoint config and model
whose name starts with ``NamePrefix`` and whose tag ``TagKey`` equals ``TagValue`` (the endpoint they were made
for), so another stage's resources in the same account are left alone. Resources already gone are fine: the
handler can run any number of times. Only boto3 is needed (the Lambda runtime ships it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
from botocore.exceptions import ClientError

PROPERTIES = ("EndpointName", "NamePrefix", "TagKey", "TagValue")


def on_event(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Provider's onEvent handler."""
    properties = event.get("ResourceProperties", {})
    missing = [name for name in PROPERTIES if not properties.get(name)]
    if missing:
        raise ValueError(f"ResourceProperties lacks {', '.join(missing)}; the custom resource must set {PROPERTIES}")
    physical_id = event.get("PhysicalResourceId") or f"workflow-cleanup-{properties['EndpointName']}"
    if event["RequestType"] == "Delete":
        deleted = clean(boto3.client("sagemaker"), endpoint=properties["EndpointName"],
                        prefix=properties["NamePrefix"], tag=(properties["TagKey"], properties["TagValue"]))
        print(f"deleted {deleted or 'nothing'}")
    return {"PhysicalResourceId": physical_id}


def clean(sagemaker: Any, *, endpoint: str, prefix: str, tag: tuple[str, str]) -> list[str]:
    """Delete the endpoint, then the tagged endpoint configs and models; the names of what was deleted."""
    deleted = []
    if _gone_if_missing(lambda: sagemaker.delete_endpoint(EndpointName=endpoint)):
        deleted.append(f"endpoint {endpoint}")
    for kind, lister, arn_key, name_key, delete in (
        ("endpoint config", "list_endpoint_configs", "EndpointConfigArn", "EndpointConfigName",
         lambda name: sagemaker.delete_endpoint_config(EndpointConfigName=name)),
        ("model", "list_models", "ModelArn", "ModelName", lambda name: sagemaker.delete_model(ModelName=name)),
    ):
        for item in _listed(sagemaker, lister, prefix):
            name = item[name_key]
            if not name.startswith(prefix) or not _tagged(sagemaker, item[arn_key], tag):
                continue
            if _gone_if_missing(lambda name=name, delete=delete: delete(name)):
                deleted.append(f"{kind} {name}")
    return deleted


def _listed(sagemaker: Any, operation: str, prefix: str) -> Iterator[dict[str, Any]]:
    key = "EndpointConfigs" if operation == "list_endpoint_configs" else "Models"
    for page in sagemaker.get_paginator(operation).paginate(NameContains=prefix):
        yield from page[key]


def _tagged(sagemaker: Any, arn: str, tag: tuple[str, str]) -> bool:
    key, value = tag
    try:
        tags = sagemaker.list_tags(ResourceArn=arn).get("Tags", [])
    except ClientError as exc:
        if _missing(exc):
            return False
        raise
    return any(t.get("Key") == key and t.get("Value") == value for t in tags)


def _gone_if_missing(call: Any) -> bool:
    """Run a delete call: True when it deleted something, False when there was nothing to delete."""
    try:
        call()
    except ClientError as exc:
        if _missing(exc):
            return False
        raise
    return True


def _missing(exc: ClientError) -> bool:
    """SageMaker answers a missing endpoint, config or model with ValidationException 'Could not find ...'."""
    error = exc.response.get("Error", {})
    return error.get("Code") in ("ValidationException", "ResourceNotFound") and "not find" in error.get("Message", "")
