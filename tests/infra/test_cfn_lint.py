"""cfn-lint on every synthesized template: no errors and no warnings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cfnlint.api import lint
from cfnlint.rules import Match

if TYPE_CHECKING:
    from tests.infra.conftest import SynthesizedApp

pytestmark = pytest.mark.infra

# The stacks are env-agnostic; lint against two regions so region-specific resource checks run.
REGIONS = ["us-east-1", "eu-central-1"]

# W3005 ("dependency already enforced by a GetAtt") fires on the Lambda functions that aws-cdk-lib itself
# generates for its custom resource providers (S3 auto-delete, default-SG restriction, LogRetention): CDK
# adds an explicit DependsOn on the role so the role outlives the function on deletion. We cannot change
# that template, so W3005 is ignored on those resources only, and nowhere else.
CDK_PROVIDER_RESOURCE = re.compile(r"^(Custom\w+CustomResourceProvider\w+|LogRetention[0-9a-f]{32}\w+)$")


# aws-cdk-lib also puts the execution role into DependsOn of every Lambda function and state machine that it
# wires to a role (next to the role's default policy, which the GetAtt does not cover); W3005 on that one
# dependency, when the GetAtt is the resource's own Role/RoleArn property, is the same construct-library pattern.
OWN_ROLE_GETATT = re.compile(r"already enforced by a 'GetAtt' at 'Resources/[^/]+/Properties/(Role|RoleArn)'")


# E3691 lists only full RDS engine versions, but RDS takes a major version ("8.4") and creates its default minor,
# which stacks/config.py uses so that a fresh deploy never names a retired minor (aws-cloudformation/cfn-lint#3849).
MAJOR_ENGINE_VERSION = re.compile(r"^'\d+\.\d+' is not one of ")


def ignored(match: Match) -> bool:
    """Whether a finding is one of the documented aws-cdk-lib W3005 warnings or the major-version E3691."""
    if match.rule.id == "E3691" and str(match.path[-1]) == "EngineVersion":
        return bool(MAJOR_ENGINE_VERSION.match(match.message))
    if match.rule.id != "W3005" or len(match.path) < 2 or match.path[0] != "Resources":
        return False
    return bool(CDK_PROVIDER_RESOURCE.match(str(match.path[1])) or OWN_ROLE_GETATT.search(match.message))


def templates(outdir: Path) -> list[Path]:
    """All CloudFormation templates in the cloud assembly, nested stage assemblies included."""
    return sorted(outdir.rglob("*.template.json"))


def test_every_stack_has_a_template(synthesized_app: SynthesizedApp) -> None:
    # network, storage, monitoring, collectors, training, serving in each of dev and prod
    assert len(templates(synthesized_app.outdir)) == 14


def test_cfn_lint_finds_no_errors_or_warnings(synthesized_app: SynthesizedApp) -> None:
    problems = []
    for template in templates(synthesized_app.outdir):
        for match in lint(template.read_text(), regions=REGIONS):
            if match.rule.id[0] in "EW" and not ignored(match):
                problems.append(
                    f"{template.name}: {match.rule.id} {'/'.join(map(str, match.path))}: {match.message}"
                )
    assert problems == []
