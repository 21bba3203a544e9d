"""Lambda deployment packages without Docker: `python -m stacks.lambda_packages build/lambda` (`make package-lambdas`).

Each function group gets one folder, `<root>/<group>/`, holding the handler package from `lambda_src/<group>/`,
the `signal_engine` source, and its runtime dependencies installed with `pip install --target` as manylinux
wheels for the Lambda runtime (CPython 3.11, x86_64), so the build works on any host and never compiles.
boto3/botocore are left out: the Lambda Python runtime ships them. The stacks take the folders with
`lambda_.Code.from_asset`; `asset_dir` finds them (CDK context key `signal-engine:lambda-assets`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Annotations
from constructs import Construct

ROOT = Path(__file__).resolve().parents[1]
ASSETS_CONTEXT_KEY = "signal-engine:lambda-assets"
DEFAULT_ASSET_ROOT = ROOT / "build" / "lambda"
PYTHON_VERSION = "3.11"
PLATFORM = "manylinux2014_x86_64"
STAMP = ".requirements.sha256"
# Shipped by the Lambda Python runtime; installing them again only adds ~80 MB to every package.
PROVIDED_BY_RUNTIME = ("boto3", "botocore", "s3transfer", "jmespath")
# RDS MySQL's and DocumentDB's TLS certificates chain to the Amazon RDS CAs, which are not in the runtime's system
# bundle. Download https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem once and pass it with
# --ca-bundle (`make package-lambdas RDS_CA_BUNDLE=path`); it lands at this path inside the package (/var/task/...).
CA_BUNDLE_PATH = "certs/rds-global-bundle.pem"
CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


@dataclass(frozen=True)
class FunctionGroup:
    """Functions that share one deployment package: the handler folder under lambda_src/ and its requirements."""

    name: str
    requirements: tuple[str, ...]


GROUPS: dict[str, FunctionGroup] = {
    # signal_engine.collectors, the SQL and DocumentDB adapters (pandas for bar frames), Powertools.
    "collectors": FunctionGroup(
        "collectors",
        (
            "numpy>=1.26",
            "pandas>=2.2",
            "sqlalchemy>=2.0",
            "pymysql>=1.1",
            "pymongo>=4.6",
            "aws-lambda-powertools[parser,tracer]>=3.0",
            "pydantic>=2.6",
            "curl_cffi>=0.7",  # the collectors' transport: a browser TLS fingerprint (Yahoo refuses Python's)
        ),
    ),
    # The serving path: gate, combiner and risk layer in NumPy, the audit log in MySQL; no TensorFlow, no pandas, and
    # no text encoder (the text expert runs on the experts' endpoint): only pymongo, to read the stored headlines the
    # endpoint scores, and tzdata, for the New York close that bounds them.
    "combiner": FunctionGroup(
        "combiner",
        (
            "numpy>=1.26",
            "sqlalchemy>=2.0",
            "pymysql>=1.1",
            "aws-lambda-powertools[parser,tracer]>=3.0",
            "pydantic>=2.6",
            "pymongo>=4.6",
            "tzdata>=2024.1",
        ),
    ),
}


def ca_bundle_environment(scope: Construct, package: str, variables: Sequence[str]) -> dict[str, str]:
    """``variables`` set to the CA bundle's path in the function when `package` carries it, else none of them.

    Without the bundle the functions refuse to connect in AWS (signal_engine.bootstrap: verified TLS only), so
    the synthesis warns here, naming the fix; it stays a warning so that `make synth` works offline.
    """
    if (Path(package) / CA_BUNDLE_PATH).is_file():
        return {variable: f"/var/task/{CA_BUNDLE_PATH}" for variable in variables}
    Annotations.of(scope).add_warning_v2(
        "signal-engine:rds-ca-bundle",
        f"{package} has no {CA_BUNDLE_PATH}: deployed, these functions refuse to connect to RDS MySQL and "
        f"DocumentDB (TLS without a CA to verify against). Download {CA_BUNDLE_URL} and run "
        "`make package-lambdas RDS_CA_BUNDLE=global-bundle.pem` before `cdk deploy`.",
    )
    return {}


def asset_dir(scope: Construct, group: str) -> str:
    """The folder to deploy for `group`, from the context key `signal-engine:lambda-assets` or build/lambda.

    Raises FileNotFoundError naming the folder and the command that builds it.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown Lambda function group {group!r}; expected one of {sorted(GROUPS)}")
    configured = scope.node.try_get_context(ASSETS_CONTEXT_KEY)
    root = Path(configured) if configured else DEFAULT_ASSET_ROOT
    if not root.is_absolute():
        root = ROOT / root
    folder = root / group
    if not (folder / group).is_dir():
        raise FileNotFoundError(
            f"Lambda package {folder} is missing (no {group}/ handler folder inside): run `make package-lambdas`, "
            f"or point the CDK context key {ASSETS_CONTEXT_KEY} at a folder holding {group}/{group}/"
        )
    return str(folder)


def requirements_digest(group: FunctionGroup) -> str:
    """What the installed dependencies depend on; the build reruns pip only when it changes."""
    return hashlib.sha256(
        json.dumps([group.requirements, PYTHON_VERSION, PLATFORM, PROVIDED_BY_RUNTIME]).encode()
    ).hexdigest()


def build_group(
    group: FunctionGroup, out: Path, *, source_root: Path = ROOT, ca_bundle: Path | None = None
) -> Path:
    """Build `out/<group>/`; pip runs only when the requirements changed since the last build."""
    handlers = source_root / "lambda_src" / group.name
    if not handlers.is_dir():
        raise FileNotFoundError(f"{handlers} does not exist: the {group.name} handlers are not written yet")
    target = out / group.name
    digest = requirements_digest(group)
    stamp = target / STAMP
    if not (stamp.is_file() and stamp.read_text().strip() == digest):
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--target", str(target), "--platform", PLATFORM, "--implementation", "cp",
                "--python-version", PYTHON_VERSION, "--only-binary=:all:", *group.requirements,
            ],
            check=True,
        )
        _prune(target)
        stamp.write_text(digest + "\n")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package, source in (("signal_engine", source_root / "signal_engine"), (group.name, handlers)):
        shutil.rmtree(target / package, ignore_errors=True)
        shutil.copytree(source, target / package, ignore=ignore)
    if ca_bundle is not None:
        if "BEGIN CERTIFICATE" not in ca_bundle.read_text():
            raise ValueError(f"--ca-bundle {ca_bundle} holds no PEM certificate")
        (target / CA_BUNDLE_PATH).parent.mkdir(exist_ok=True)
        shutil.copyfile(ca_bundle, target / CA_BUNDLE_PATH)
    return target


def _prune(target: Path) -> None:
    """Drop what the runtime provides, bytecode caches and the test suites of numpy/pandas (~56 MB)."""
    for name in PROVIDED_BY_RUNTIME:
        shutil.rmtree(target / name, ignore_errors=True)
        for info in target.glob(f"{name}-*.dist-info"):
            shutil.rmtree(info)
    for package in ("numpy", "pandas"):
        for tests in sorted((target / package).rglob("tests"), reverse=True):
            if tests.is_dir():
                shutil.rmtree(tests)
    for cache in sorted(target.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path, nargs="?", default=DEFAULT_ASSET_ROOT, help="output root")
    parser.add_argument("--group", choices=sorted(GROUPS), action="append", help="build only these groups")
    parser.add_argument("--ca-bundle", type=Path, help="the Amazon RDS CA bundle (PEM) for MySQL's and DocumentDB's "
                        "TLS")
    args = parser.parse_args(argv)
    for name in args.group or sorted(GROUPS):
        try:
            print(f"built {build_group(GROUPS[name], args.out, ca_bundle=args.ca_bundle)}")
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
