"""Build the combiner's Lambda package, with bytecode for what it imports: ``python lambda_src/combiner/build.py``.

Writes ``build/lambda/combiner/`` (the folder the serving stack deploys, ``stacks.lambda_packages.asset_dir``)
with ``stacks.lambda_packages`` (manylinux wheels for CPython 3.11 x86_64, boto3/botocore left to the runtime),
then compiles to ``__pycache__`` the modules the handler imports at a cold start and on its first request (found by
importing them from the package in an isolated interpreter). Lambda's file system is read-only, so without
``.pyc`` files each cold start compiles them again (about 1.3 s of CPU against 0.3 s, measured by
``benchmarks/bench_serving.py``); compiling only those modules keeps the package small. The ``.pyc`` files are
unchecked-hash ones: valid whatever modification times the asset zip keeps.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import py_compile
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath")
# What a cold start imports, then what the first request adds (the wiring imports its adapters lazily).
IMPORTED = ("combiner.handler", "combiner.wiring", "sqlalchemy", "pymysql", "signal_engine.adapters.s3",
            "signal_engine.serving.batch_jobs", "signal_engine.adapters.object_stores",
            "signal_engine.adapters.sagemaker_runtime", "signal_engine.adapters.aws_secrets",
            "signal_engine.adapters.sql.engine", "signal_engine.adapters.sql.ledger",
            "signal_engine.adapters.sql.migrations", "signal_engine.adapters.sql.recent_bars",
            "signal_engine.adapters.sql.books",
            "sqlalchemy.dialects.mysql.pymysql", "sqlalchemy.dialects.sqlite.pysqlite")
LIST_MODULES = """
import json, os, sys
sys.path[:0] = [{package!r}, {runtime!r}]
os.environ.update(MODEL_BUNDLE_URI="s3://build/models/", SIGNAL_ENGINE_DATABASE_URL="sqlite://")
import importlib
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps(sorted({{getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}})))
"""


def runtime_folder() -> Path:
    """A folder holding (links to) what the Lambda Python runtime provides beside the package."""
    folder = Path(tempfile.mkdtemp(prefix="lambda-runtime-"))
    for name in RUNTIME_PROVIDED:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            (folder / name).symlink_to(Path(spec.origin).parent)
    return folder


def imported_files(package: Path) -> list[Path]:
    """The package's ``.py`` files that the handler and its first request import."""
    script = LIST_MODULES.format(package=str(package), runtime=str(runtime_folder()), modules=IMPORTED)
    out = subprocess.run([sys.executable, "-S", "-E", "-B", "-c", script], cwd=package, capture_output=True,
                         text=True, check=True)
    files = [Path(f) for f in json.loads(out.stdout.strip().splitlines()[-1]) if f.endswith(".py")]
    return [f for f in files if f.resolve().is_relative_to(package.resolve())]


def build(out: Path, ca_bundle: Path | None = None) -> Path:
    """Build (or refresh) ``out/combiner`` (with the RDS CA bundle, when given) and precompile what it imports;
    returns the package folder."""
    sys.path.insert(0, str(ROOT))
    from stacks.lambda_packages import GROUPS, build_group

    if sys.version_info[:2] != (3, 11):
        raise SystemExit(f"build with CPython 3.11 (the Lambda runtime's); this is {sys.version.split()[0]}")
    folder = build_group(GROUPS["combiner"], out, ca_bundle=ca_bundle)
    for cache in sorted(folder.rglob("__pycache__"), reverse=True):
        for stale in cache.glob("*.pyc"):
            stale.unlink()
    for source in imported_files(folder):
        py_compile.compile(str(source), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path, nargs="?", default=ROOT / "build" / "lambda", help="output root")
    parser.add_argument("--ca-bundle", type=Path, help="the Amazon RDS CA bundle (PEM) for MySQL's TLS")
    args = parser.parse_args(argv)
    print(f"built {build(args.out, args.ca_bundle)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
