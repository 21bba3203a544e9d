"""checkov (CloudFormation framework) on every synthesized template: no failed check, and every skip is one
recorded on its resource with a specific reason (stacks/constructs/nag.py `skip_checkov`).

checkov runs once per session, from its own virtualenv (`make setup` builds .venv-tools; its pinned
dependencies conflict with .venv's, see requirements-tools.txt), over the templates plus a small canary
template that proves the checks and the skip format are live.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_sqs as sqs

from stacks.constructs.nag import CHECKOV_ID, skip_checkov

if TYPE_CHECKING:
    from tests.infra.conftest import SynthesizedApp

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
TOOLS_CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"
# A log group without a key and a queue without encryption, one of them skipped: the canary of the checks.
CANARY = {
    "Resources": {
        "PlainLogs": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 7}},
        "PlainQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {},
            "Metadata": {"checkov": {"skip": [{"id": "CKV_AWS_27", "comment": "canary: the skip format works"}]}},
        },
    }
}


@dataclass(frozen=True)
class CheckovRun:
    """checkov's JSON report, split into the app's templates and the canary."""

    templates: list[Path]
    results: dict[str, list[dict[str, Any]]]
    summary: dict[str, Any]
    canary: Path

    def checks(self, kind: str, *, canary: bool = False) -> list[dict[str, Any]]:
        """`failed_checks`, `passed_checks` or `skipped_checks`, of the canary or of the app's templates."""
        return [c for c in self.results[kind] if (Path(c["file_abs_path"]) == self.canary) == canary]


def checkov_command() -> str:
    """$CHECKOV (make test sets it), else .venv-tools/bin/checkov; a clear failure when neither exists."""
    command = os.environ.get("CHECKOV") or str(TOOLS_CHECKOV)
    if not Path(command).is_file():
        pytest.fail(f"checkov not found at {command}: run `make setup` (it builds .venv-tools from "
                    "requirements-tools.txt) or set CHECKOV to a checkov executable")
    return command


@pytest.fixture(scope="session")
def checkov_run(synthesized_app: SynthesizedApp, tmp_path_factory: pytest.TempPathFactory) -> CheckovRun:
    templates = sorted(synthesized_app.outdir.rglob("*.template.json"))
    canary = tmp_path_factory.mktemp("checkov") / "canary.template.json"
    canary.write_text(json.dumps(CANARY))
    files = [arg for path in [*templates, canary] for arg in ("--file", str(path))]
    completed = subprocess.run(
        [checkov_command(), "--framework", "cloudformation", "--output", "json", "--compact", "--skip-download",
         *files],
        capture_output=True, text=True, timeout=600, check=False,
    )
    # Exit status 1 means failed checks, which the tests below report one by one.
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    report = json.loads(completed.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["check_type"] == "cloudformation"
    return CheckovRun(templates, report["results"], report["summary"], canary.resolve())


def test_checkov_finds_no_failed_checks(checkov_run: CheckovRun) -> None:
    failures = [
        f"{c['check_id']} {c['resource']} in {Path(c['file_path']).name}: {c['check_name']}"
        for c in checkov_run.checks("failed_checks")
    ]
    assert failures == [], "\n" + "\n".join(failures)


def test_checkov_read_every_template(checkov_run: CheckovRun) -> None:
    assert len(checkov_run.templates) == 14
    assert checkov_run.summary["parsing_errors"] == 0
    checked = {Path(c["file_abs_path"]).resolve() for c in checkov_run.checks("passed_checks")}
    assert checked == {path.resolve() for path in checkov_run.templates}


def test_checks_are_not_vacuous(checkov_run: CheckovRun) -> None:
    failed = {(c["check_id"], c["resource"]) for c in checkov_run.checks("failed_checks", canary=True)}
    assert ("CKV_AWS_158", "AWS::Logs::LogGroup.PlainLogs") in failed
    skipped = {(c["check_id"], c["resource"]) for c in checkov_run.checks("skipped_checks", canary=True)}
    assert skipped == {("CKV_AWS_27", "AWS::SQS::Queue.PlainQueue")}


def recorded_skips(templates: list[Path]) -> list[tuple[str, str, str, str]]:
    """(template name, logical id, check id, comment) of every checkov skip in the templates' Metadata."""
    found = []
    for template in templates:
        for logical_id, resource in json.loads(template.read_text())["Resources"].items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                found.append((template.name, logical_id, skip["id"], skip.get("comment", "")))
    return found


def test_every_skip_has_a_specific_reason(checkov_run: CheckovRun) -> None:
    skips = recorded_skips(checkov_run.templates)
    assert skips, "expected the documented skips (access-log bucket, combiner DLQ, CDK handlers, ...)"
    for template, logical_id, check_id, comment in skips:
        where = f"{check_id} on {logical_id} in {template}"
        assert CHECKOV_ID.fullmatch(check_id), where
        assert len(comment) >= 60, f"{where}: reason too thin: {comment!r}"


def test_checkov_honours_exactly_the_recorded_skips(checkov_run: CheckovRun) -> None:
    recorded = {(template, logical_id, check_id) for template, logical_id, check_id, _ in
                recorded_skips(checkov_run.templates)}
    honoured = {
        (Path(c["file_path"]).name, c["resource"].split(".", 1)[1], c["check_id"])
        for c in checkov_run.checks("skipped_checks")
    }
    # A recorded skip that checkov does not report names a check that never runs on that resource type.
    assert honoured == recorded


def test_skips_are_kept_per_check_on_the_resource() -> None:
    stack = Stack(App(), "Skips")
    queue = sqs.Queue(stack, "Queue")
    reason = "a specific reason of at least six words"
    skip_checkov(queue, "CKV_AWS_27", reason)
    skip_checkov(queue, "CKV_AWS_27", reason + " again")
    skip_checkov(queue, "CKV2_AWS_73", reason)
    resource = queue.node.default_child
    assert resource is not None
    assert resource.get_metadata("checkov") == {"skip": [  # type: ignore[attr-defined]
        {"id": "CKV_AWS_27", "comment": reason + " again"}, {"id": "CKV2_AWS_73", "comment": reason}]}
    with pytest.raises(ValueError, match="specific reason"):
        skip_checkov(queue, "CKV_AWS_27", "not applicable")
    with pytest.raises(ValueError, match="check id"):
        skip_checkov(queue, "AwsSolutions-S1", reason)
    with pytest.raises(TypeError, match="no CloudFormation resource"):
        skip_checkov(stack, "CKV_AWS_27", reason)


def test_operations_key_admits_cloudwatch_logs_of_its_account_only(synthesized_app: SynthesizedApp) -> None:
    """Log groups encrypted with a key whose policy leaves out the Logs service fail to create on deploy."""
    for stage in synthesized_app.stages.values():
        key = stage.operations_key
        policy = Stack.of(key).resolve(key.node.default_child.key_policy)  # type: ignore[union-attr]
        statements = [s for s in policy["Statement"] if s.get("Sid") == "CloudWatchLogs"]
        assert len(statements) == 1, policy
        statement = statements[0]
        principal = json.dumps(statement["Principal"])
        assert re.search(r"logs\.\"?.*AWS::Region.*amazonaws\.com", principal), principal
        assert "kms:GenerateDataKey*" in statement["Action"] and "kms:Decrypt*" in statement["Action"]
        context = json.dumps(statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
        assert "AWS::AccountId" in context and ":log-group:*" in context

