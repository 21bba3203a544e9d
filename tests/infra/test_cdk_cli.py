"""`cdk synth` with the real CDK CLI (the pinned npm package), offline and without Docker: one run per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stacks.lambda_packages import ASSETS_CONTEXT_KEY

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
CDK = ROOT / "node_modules" / ".bin" / "cdk"


@pytest.fixture(scope="module")
def cli_synth(tmp_path_factory: pytest.TempPathFactory, lambda_assets: Path) -> tuple[Path, Path, str]:
    """Run `cdk synth` once into a temporary cloud assembly, with a `docker` on PATH that records any call."""
    if not CDK.exists():
        pytest.fail(f"{CDK} is missing: run `make setup` (npm ci installs the pinned aws-cdk CLI)")
    tmp = tmp_path_factory.mktemp("cli")
    bin_dir, calls = tmp / "bin", tmp / "docker-calls"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    docker.chmod(0o755)
    outdir = tmp / "cdk.out"
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(bin_dir), str(ROOT / ".venv" / "bin"), os.environ.get("PATH", "")]),
        "CDK_DISABLE_VERSION_CHECK": "1",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        # Any attempt to reach the network (lookups, notices, telemetry) fails fast instead of hanging.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [str(CDK), "synth", "--quiet", "--no-notices", "--output", str(outdir),
         "--context", f"{ASSETS_CONTEXT_KEY}={lambda_assets}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return outdir, calls, result.stderr


def test_cli_synthesizes_every_stack_of_both_stages(cli_synth: tuple[Path, Path, str]) -> None:
    outdir, _, _ = cli_synth
    names = sorted(p.name.split(".")[0] for p in outdir.rglob("*.template.json"))
    prefixes = {name.rstrip("0123456789ABCDEF") for name in names}
    for stage in ("Dev", "Prod"):
        for stack in ("Network", "Storage", "Monitoring", "Collectors", "Training", "Serving", "Book"):
            assert f"SignalEngine{stage}{stack}" in prefixes, names


def test_cli_synth_never_calls_docker(cli_synth: tuple[Path, Path, str]) -> None:
    outdir, calls, _ = cli_synth
    assert not calls.exists(), calls.read_text()
    images = [
        image
        for manifest in outdir.rglob("*.assets.json")
        for image in json.loads(manifest.read_text()).get("dockerImages", {}).values()
    ]
    # the GPU (TensorFlow) and CPU training images, the inference image and the Lambda image (the book step's, in the
    # Book stack, and the backtest fan-out's, in the Training stack), in dev and prod
    assert sorted(image["displayName"] for image in images) == sorted(
        [name for name in ("signal-engine training image", "signal-engine training-cpu image",
                           "signal-engine inference image", "signal-engine Lambda image",
                           "signal-engine Lambda image") for _ in ("dev", "prod")])


def test_cli_synth_reports_no_nag_findings(cli_synth: tuple[Path, Path, str]) -> None:
    outdir, _, stderr = cli_synth
    report = json.loads((outdir / "validation-report.json").read_text())
    # app.py registers cdk-nag as a validation plugin; a finding would fail the synth (exit code) and be listed
    # here. Only the construct annotations (the DocumentDB CA bundle warning of the test package) remain.
    assert [p["pluginName"] for p in report["pluginReports"] if p.get("violations")] == ["Construct Annotations"]
    assert all(p["conclusion"] == "success" for p in report["pluginReports"])
    assert "AwsSolutions-" not in stderr


def test_cli_output_stays_in_the_temporary_folder(cli_synth: tuple[Path, Path, str]) -> None:
    outdir, _, _ = cli_synth
    assert outdir.is_dir() and not str(outdir).startswith(str(ROOT))
    shutil.rmtree(outdir)  # the staged assets (lambda folders, docker contexts) are a few MB; free them now
