"""One place to acknowledge cdk-nag findings and skip checkov checks, each with a written reason."""

from __future__ import annotations

import json
import re
from typing import Any

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from constructs import IConstruct

CHECKOV_METADATA_KEY = "checkov"
CHECKOV_ID = re.compile(r"CKV2?_AWS_\d+")


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (e.g. "AwsSolutions-S1" or "AwsSolutions-IAM5[Resource::*]") on scope.

    cdk-nag 3 reads `Validations.of(...).acknowledge(...)` metadata on the resource and its parents, so call
    this on the construct that owns the resource, right where it is created.
    """
    if len(reason.split()) < 6:
        raise ValueError(f"acknowledging {rule_id} needs a specific reason, not {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def skip_checkov(scope: IConstruct, check_id: str, reason: str) -> None:
    """Skip one checkov check (e.g. "CKV_AWS_116") on the CloudFormation resource of `scope`, with a reason.

    checkov reads `Metadata: {"checkov": {"skip": [{"id": ..., "comment": ...}]}}` on the resource itself
    (checkov.cloudformation.context_parser.ContextParser.collect_skip_comments), so `scope` is an L1 resource
    or an L2 construct whose default child is one; a skip never covers a whole stack.
    """
    if not CHECKOV_ID.fullmatch(check_id):
        raise ValueError(f"{check_id!r} is not a checkov AWS check id such as 'CKV_AWS_116' or 'CKV2_AWS_69'")
    if len(reason.split()) < 6:
        raise ValueError(f"skipping {check_id} needs a specific reason, not {reason!r}")
    resource = scope if isinstance(scope, CfnResource) else scope.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{scope.node.path} has no CloudFormation resource to carry a checkov skip")
    metadata = resource.get_metadata(CHECKOV_METADATA_KEY) or {}
    skips = [skip for skip in metadata.get("skip", []) if skip["id"] != check_id]
    resource.add_metadata(CHECKOV_METADATA_KEY, {"skip": [*skips, {"id": check_id, "comment": reason}]})


def nag_text(stack: Stack, value: str) -> str:
    """A value as cdk-nag prints it in a finding id: ``Ref`` as ``<Id>``, ``Fn::GetAtt`` as ``<Id.Attr>``, other
    intrinsics as compact JSON."""

    def text(resolved: Any) -> str:
        if isinstance(resolved, str):
            return resolved
        if "Fn::Join" in resolved:
            separator, parts = resolved["Fn::Join"]
            return str(separator).join(text(p) for p in parts)
        if "Ref" in resolved:
            return f"<{resolved['Ref']}>"
        if "Fn::GetAtt" in resolved:
            return f"<{'.'.join(resolved['Fn::GetAtt'])}>"
        return json.dumps(resolved, separators=(",", ":"))

    return text(stack.resolve(value))
