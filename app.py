#!/usr/bin/env python3
"""The CDK app: a dev and a prod stage of signal-engine, checked by cdk-nag's AWS Solutions rules."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from stacks.config import load_stage_config
from stacks.stage import SignalEngineStage

STAGE_NAMES = ("dev", "prod")


def build_app(
    *,
    outdir: str | None = None,
    context: Mapping[str, Any] | None = None,
    stages: Sequence[str] = STAGE_NAMES,
    nag: bool = True,
) -> App:
    """Build the app with one SignalEngineStage per stage name (env-agnostic, no context lookups).

    With `nag`, cdk-nag runs as a policy-validation plugin: any finding that is not acknowledged next to its
    resource fails the synthesis.
    """
    app = App(outdir=outdir, context=dict(context) if context is not None else None)
    for name in stages:
        overrides = app.node.try_get_context(f"signal-engine:{name}")
        if isinstance(overrides, str):  # `cdk synth -c key=value` passes JSON as text
            overrides = json.loads(overrides)
        config = load_stage_config(name, overrides)
        SignalEngineStage(app, config.construct_id, config=config)
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app


if __name__ == "__main__":
    build_app().synth()
