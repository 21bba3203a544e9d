"""Session fixtures: the CDK app is synthesized once (dev and prod stages) and shared by all infra tests."""

from __future__ import annotations

import json
import shutil
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
from stacks.lambda_packages import ASSETS_CONTEXT_KEY, GROUPS  # noqa: E402
from stacks.stage import SignalEngineStage  # noqa: E402

# A caller in another account that prod's Signal API lets in (test_access.py checks who else may not).
TRADER_ROLE = "arn:aws:iam::444455556666:role/trader"
# Prod's missed-step alarm period, set from the context (the default is 80 hours): test_book.py checks it reaches the
# alarm on the shared app instead of synthesizing a stage of its own.
PROD_BOOK_STEP_MISSED_AFTER_HOURS = 100


@dataclass(frozen=True)
class SynthesizedApp:
    """The shared app, its stages by stage name, and the cloud assembly directory."""

    app: App
    stages: dict[str, SignalEngineStage]
    outdir: Path


@pytest.fixture(scope="session")
def lambda_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small stand-ins for `make package-lambdas`: each group's folder holds only its handler package.

    The stacks only hash and copy these folders, so synthesis stays fast and needs no pip run.
    """
    root = tmp_path_factory.mktemp("lambda")
    for group in GROUPS:
        shutil.copytree(ROOT / "lambda_src" / group, root / group / group, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="session")
def cdk_context(lambda_assets: Path) -> dict[str, Any]:
    """The feature flags from cdk.json, so in-process synthesis matches `cdk synth`, plus the test asset folder.

    Prod turns on expert autoscaling (off by default until a training run created the endpoint) so that both
    branches of the serving stack are synthesized: dev without, prod with; prod's API also lets in TRADER_ROLE, and
    prod's book step alarms after PROD_BOOK_STEP_MISSED_AFTER_HOURS.
    """
    context = dict(json.loads((ROOT / "cdk.json").read_text())["context"])
    context[ASSETS_CONTEXT_KEY] = str(lambda_assets)
    context["signal-engine:prod"] = {"expert_autoscaling": True,
                                     "api_allowed_principals": ["this-account", TRADER_ROLE],
                                     "book_step_missed_after_hours": PROD_BOOK_STEP_MISSED_AFTER_HOURS}
    return context


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


@pytest.fixture(scope="session")
def collectors_template(dev_stage: SignalEngineStage) -> Template:
    """Template of the dev collectors stack."""
    assert dev_stage.collectors is not None
    return Template.from_stack(dev_stage.collectors)


@pytest.fixture(scope="session")
def prod_collectors_template(prod_stage: SignalEngineStage) -> Template:
    """Template of the prod collectors stack."""
    assert prod_stage.collectors is not None
    return Template.from_stack(prod_stage.collectors)


@pytest.fixture(scope="session")
def training_template(dev_stage: SignalEngineStage) -> Template:
    """Template of the dev training stack."""
    return Template.from_stack(dev_stage.training)


@pytest.fixture(scope="session")
def prod_training_template(prod_stage: SignalEngineStage) -> Template:
    """Template of the prod training stack."""
    return Template.from_stack(prod_stage.training)


@pytest.fixture(scope="session")
def serving_template(dev_stage: SignalEngineStage) -> Template:
    """Template of the dev serving stack."""
    return Template.from_stack(dev_stage.serving)


@pytest.fixture(scope="session")
def prod_serving_template(prod_stage: SignalEngineStage) -> Template:
    """Template of the prod serving stack (expert autoscaling on, see cdk_context)."""
    return Template.from_stack(prod_stage.serving)


@pytest.fixture(scope="session")
def book_template(dev_stage: SignalEngineStage) -> Template:
    """Template of the dev book stack (the live book's step)."""
    return Template.from_stack(dev_stage.book)


@pytest.fixture(scope="session")
def prod_book_template(prod_stage: SignalEngineStage) -> Template:
    """Template of the prod book stack."""
    return Template.from_stack(prod_stage.book)
