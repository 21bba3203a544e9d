"""Session fixtures: the CDK app is synthesized once (dev and prod stages) and shared by all infra tests."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # app.py and stacks/ live at the repository root, outside any package
    sys.path.insert(0, str(ROOT))

from aws_cdk import App  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from app import build_app  # noqa: E402
from stacks.stage import SignalEngineStage  # noqa: E402


@dataclass(frozen=True)
class SynthesizedApp:
    """The shared app, its stages by stage name, and the cloud assembly directory."""

    app: App
    stages: dict[str, SignalEngineStage]
    outdir: Path


@pytest.fixture(scope="session")
def cdk_context() -> dict[str, Any]:
    """The feature flags from cdk.json, so in-process synthesis matches `cdk synth`."""
    return dict(json.loads((ROOT / "cdk.json").read_text())["context"])


@pytest.fixture(scope="session")
def synthesized_app(tmp_path_factory: pytest.TempPathFactory, cdk_context: dict[str, Any]) -> SynthesizedApp:
    """Build and synthesize the app once; cdk-nag is checked per stack in test_nag.py instead of at synth."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = build_app(outdir=str(outdir), context=cdk_context, nag=False)
    app.synth()
    stages = {child.config.name: child for child in app.node.children if isinstance(child, SignalEngineStage)}
    return SynthesizedApp(app=app, stages=stages, outdir=outdir)


@pytest.fixture(scope="session")
def dev_stage(synthesized_app: SynthesizedApp) -> SignalEngineStage:
    """The dev stage."""
    return synthesized_app.stages["dev"]


@pytest.fixture(scope="session")
def prod_stage(synthesized_app: SynthesizedApp) -> SignalEngineStage:
    """The prod stage."""
    return synthesized_app.stages["prod"]


@pytest.fixture(scope="session")
def network_template(dev_stage: SignalEngineStage) -> Template:
    """Template of the dev network stack."""
    return Template.from_stack(dev_stage.network)


@pytest.fixture(scope="session")
def prod_network_template(prod_stage: SignalEngineStage) -> Template:
    """Template of the prod network stack (NAT, endpoints in every AZ)."""
    return Template.from_stack(prod_stage.network)


@pytest.fixture(scope="session")
def storage_template(dev_stage: SignalEngineStage) -> Template:
    """Template of the dev storage stack."""
    return Template.from_stack(dev_stage.storage)


@pytest.fixture(scope="session")
def prod_storage_template(prod_stage: SignalEngineStage) -> Template:
    """Template of the prod storage stack (deletion protection, Multi-AZ, retained data)."""
    return Template.from_stack(prod_stage.storage)


@pytest.fixture(scope="session")
def monitoring_template(dev_stage: SignalEngineStage) -> Template:
    """Template of the dev monitoring stack."""
    return Template.from_stack(dev_stage.monitoring)


@pytest.fixture(scope="session")
def prod_monitoring_template(prod_stage: SignalEngineStage) -> Template:
    """Template of the prod monitoring stack."""
    return Template.from_stack(prod_stage.monitoring)
