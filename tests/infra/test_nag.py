"""cdk-nag AwsSolutions: no unacknowledged errors or warnings, and every acknowledgment sits on its resource.

cdk-nag 3 is a CDK policy-validation plugin (`Validations.of(app).add_plugins(...)`), not an Aspect, and it
reports violations instead of annotations; `validate_scope` gives the same report for one stack.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aws_cdk import App, Stack, Stage, Validations
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from app import build_app

if TYPE_CHECKING:
    from tests.infra.conftest import SynthesizedApp

pytestmark = pytest.mark.infra

STACKS = [
    f"{stage}/{stack}"
    for stage in ("dev", "prod")
    for stack in ("network", "storage", "monitoring", "collectors", "training", "serving", "book")
]
# Wildcard actions come only from aws-cdk-lib's bucket grants inside TrainingWorkflow, on the SageMaker role.
GRANTED_ACTION_WILDCARDS = {
    "s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*", "kms:GenerateDataKey*",
    "kms:ReEncrypt*",
}


def stack_of(synthesized_app: SynthesizedApp, name: str) -> Stack:
    """Look up "dev/storage" and the like."""
    stage, attribute = name.split("/")
    stack = getattr(synthesized_app.stages[stage], attribute)
    assert isinstance(stack, Stack)
    return stack


def findings(stack: Stack) -> list[tuple[str | None, str]]:
    """Unacknowledged AwsSolutions findings, each (severity, readable line)."""
    report = AwsSolutionsChecks(verbose=True).validate_scope(stack)
    return [
        (violation.severity, f"{violation.rule_name} at {resource.construct_path}: {violation.description}")
        for violation in report.violations
        for resource in violation.violating_resources
    ]


@pytest.fixture(scope="module")
def nag_findings(synthesized_app: SynthesizedApp) -> Callable[[str, str], list[str]]:
    """The findings of one severity on a stack ("dev/storage"): cdk-nag checks each stack once for both severities."""
    checked: dict[str, list[tuple[str | None, str]]] = {}

    def of(name: str, severity: str) -> list[str]:
        if name not in checked:
            checked[name] = findings(stack_of(synthesized_app, name))
        return [line for found, line in checked[name] if found == severity]

    return of


@pytest.mark.parametrize("name", STACKS)
def test_no_unacknowledged_errors(nag_findings: Callable[[str, str], list[str]], name: str) -> None:
    assert nag_findings(name, "error") == []


@pytest.mark.parametrize("name", STACKS)
def test_no_unacknowledged_warnings(nag_findings: Callable[[str, str], list[str]], name: str) -> None:
    assert nag_findings(name, "warning") == []


def acknowledgments(root: IConstruct) -> list[tuple[IConstruct, str, str]]:
    """Every (construct, rule id, reason) that the project recorded with Validations.of(...).acknowledge."""
    found: list[tuple[IConstruct, str, str]] = []
    for construct in root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                data: dict[str, Any] = entry.data
                # CDK records its own acknowledgments too ("CloudFormation-Validate::W3010"); ours carry the
                # default "Annotation::" namespace.
                found.extend(
                    (construct, rule.removeprefix("Annotation::"), reason)
                    for rule, reason in data.items()
                    if rule.startswith("Annotation::")
                )
    return found


@pytest.fixture(scope="module")
def recorded(synthesized_app: SynthesizedApp) -> list[tuple[IConstruct, str, str]]:
    """The app's acknowledgments, collected once (a walk over every construct of both stages)."""
    return acknowledgments(synthesized_app.app)


def test_acknowledgments_sit_on_resources_with_specific_reasons(recorded: list[tuple[IConstruct, str, str]]) -> None:
    found = recorded
    assert found, "expected the documented acknowledgments (access-log bucket, database ports, ...)"
    for construct, rule, reason in found:
        assert rule.startswith("AwsSolutions-"), rule
        assert not isinstance(construct, Stack | Stage | App), (
            f"{rule} acknowledged on all of {construct.node.path}"
        )
        assert len(reason) >= 60, f"{rule} on {construct.node.path}: reason too thin: {reason!r}"


def test_no_blanket_wildcard_acknowledgment(recorded: list[tuple[IConstruct, str, str]]) -> None:
    seen_actions = set()
    for construct, rule, _ in recorded:
        if not rule.startswith("AwsSolutions-IAM5"):
            continue
        # Each wildcard finding is acknowledged by name, never the rule as a whole.
        assert rule.startswith("AwsSolutions-IAM5[") and rule.endswith("]"), rule
        finding = rule.removeprefix("AwsSolutions-IAM5[").removesuffix("]")
        if finding.startswith("Action::"):
            action = finding.removeprefix("Action::")
            assert action in GRANTED_ACTION_WILDCARDS, action
            assert "/Storage/SageMakerRole" in construct.node.path, construct.node.path
            seen_actions.add(action)
        elif finding == "Resource::*":
            # Services without resource-level permissions: CDK's LogRetention, X-Ray, ECR auth, ListEndpoints.
            assert construct.node.id.startswith("LogRetention") or construct.node.id in ("DefaultPolicy", "Role")
        else:
            # Prefixes: objects under a key prefix, SageMaker names, log groups; never a whole service.
            assert finding.startswith("Resource::") and finding.endswith("*"), finding
            resource = finding.removeprefix("Resource::")
            assert not re.fullmatch(r"arn:[^:]*:[a-z0-9-]+:[^:]*:[^:]*:\*", resource), f"service-wide: {resource}"
    assert seen_actions == GRANTED_ACTION_WILDCARDS


def test_checks_are_not_vacuous() -> None:
    stack = Stack(App(), "Bare")
    s3.Bucket(stack, "PlainBucket")
    rules = {violation.rule_name for violation in AwsSolutionsChecks().validate_scope(stack).violations}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules


def test_app_synthesizes_with_the_nag_plugin(tmp_path: Path, cdk_context: dict[str, Any]) -> None:
    """The real app with the plugin registered: any unacknowledged finding would raise ValidationFailed."""
    app = build_app(outdir=str(tmp_path), context=cdk_context, nag=True)
    assembly = app.synth()
    assert {stage.config.name for stage in app.node.children if hasattr(stage, "config")} == {"dev", "prod"}
    assert len(assembly.nested_assemblies) == 2
