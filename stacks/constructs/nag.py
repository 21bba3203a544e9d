"""One place to acknowledge cdk-nag findings with a written reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (e.g. "AwsSolutions-S1" or "AwsSolutions-IAM5[Resource::*]") on scope.

    cdk-nag 3 reads `Validations.of(...).acknowledge(...)` metadata on the resource and its parents, so call
    this on the construct that owns the resource, right where it is created.
    """
    if len(reason.split()) < 6:
        raise ValueError(f"acknowledging {rule_id} needs a specific reason, not {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))
