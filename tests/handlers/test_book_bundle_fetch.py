"""fetch_book_bundle against S3 (moto's HTTP server): the whole-book bundle's layout is copied (book.json, the main
bundle with experts/, every books/<book>/<model>/ bundle that book.json names), nothing else; a missing file is
named; a version is fetched once and reused while warm, and a newly promoted CURRENT is fetched."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import boto3
import pytest

from signal_engine.bootstrap import object_store
from signal_engine.ports import ObjectStore
from signal_engine.serving.bundle import BundleError
from signal_engine.serving.bundle_source import fetch_book_bundle
from tests.handlers.conftest import Aws

BUCKET = "signal-engine-artifacts-fetch"


def expert_files(prefix: str, names: tuple[str, ...]) -> dict[str, bytes]:
    """An experts/ artefact folder as save_experts writes it: manifest.json naming each model file and its digest."""
    files = {f"{prefix}experts/{name}/model.pkl": f"model of {prefix}{name}".encode() for name in names}
    manifest = {"schema_version": 1, "experts": {
        name: {"file": f"{name}/model.pkl", "class": "x.Y",
               "sha256": hashlib.sha256(files[f"{prefix}experts/{name}/model.pkl"]).hexdigest()}
        for name in names}}
    return {**files, f"{prefix}experts/manifest.json": json.dumps(manifest).encode()}


def bundle_files(prefix: str, *, rule_gate: bool = False) -> dict[str, bytes]:
    doc = {"schema_version": 1, "version": "v", "gate": {"kind": "rule"} if rule_gate else {"kind": "softmax"},
           "combiner": {"kind": "weighted", "file": None}, "calibration": {"file": "calibration.json"}}
    files = {f"{prefix}bundle.json": json.dumps(doc).encode(), f"{prefix}calibration.json": b'{"x": [0], "y": [0]}'}
    if not rule_gate:
        files[f"{prefix}gate.npz"] = b"PK-gate"
    return files


def book_json(*folders: str) -> bytes:
    """book.json as docs/model-bundle.md lays it out, one model per folder (specs as the orchestration reads them)."""
    models = [{"spec": {"name": f"m{i}", "rank": i, "horizon": 1 + i}, "bundle": folder}
              for i, folder in enumerate(folders)]
    book = {"name": "daily", "symbols": ["AAPL"], "models": models, "seed": "books/daily/seed.json"}
    return json.dumps({"schema_version": 1, "books": [book]}).encode()


def version_files() -> dict[str, bytes]:
    """A whole-book version: book.json, the version's own MoE (".") and a model of its own; plus what the book does
    not need (the endpoint's tarball, a folder no model names)."""
    return {"book.json": book_json("books/daily/m0", "."), **bundle_files(""),
            **expert_files("", ("trend/lgbm", "garch")),
            **bundle_files("books/daily/m0/", rule_gate=True), **expert_files("books/daily/m0/", ("trend/lgbm",)),
            "books/daily/m0/metrics.json": b"{}", "metrics.json": b"{}", "books/daily/seed.json": b"{}",
            "model.tar.gz": b"the endpoint's copy of experts/", "books/old/m9/bundle.json": b"{}"}


NOT_NEEDED = ("model.tar.gz", "books/old/m9/bundle.json")


@pytest.fixture
def artifacts(aws: Aws) -> ObjectStore:
    """An empty artifacts bucket on moto, as the S3 adapter sees it."""
    if BUCKET not in {b["Name"] for b in aws.s3.list_buckets()["Buckets"]}:
        aws.s3.create_bucket(Bucket=BUCKET)
    for item in aws.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        aws.s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    return object_store(f"s3://{BUCKET}", boto3.client)


def publish(store: ObjectStore, version: str, files: dict[str, bytes], *, current: bool = True) -> None:
    for key, data in files.items():
        store.put(f"models/{version}/{key}", data)
    if current:
        store.put("models/CURRENT", f"{version}\n".encode())


def objects(bucket: str, prefix: str) -> ObjectStore:
    return object_store(f"s3://{bucket}/{prefix}", boto3.client)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_current_whole_book_bundle_is_copied_and_nothing_else(artifacts: ObjectStore, tmp_path: Path) -> None:
    files = version_files()
    publish(artifacts, "v1", files)
    folder = fetch_book_bundle(f"s3://{BUCKET}/models/", objects, tmp_path / "cache")
    assert folder == tmp_path / "cache" / "v1"
    wanted = {k: v for k, v in files.items() if k not in NOT_NEEDED}
    assert tree(folder) == wanted
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["v1"], "no staging folder left behind"
    # A pinned version folder works the same.
    assert tree(fetch_book_bundle(f"s3://{BUCKET}/models/v1/", objects, tmp_path / "pinned")) == wanted


def test_a_warm_environment_reuses_the_version_and_fetches_a_new_current(artifacts: ObjectStore,
                                                                         tmp_path: Path) -> None:
    publish(artifacts, "v1", version_files())
    cache = tmp_path / "cache"
    fetch_book_bundle(f"s3://{BUCKET}/models/", objects, cache)
    artifacts.put("models/v1/experts/garch/model.pkl", b"changed behind our back")  # versions are immutable
    again = fetch_book_bundle(f"s3://{BUCKET}/models/", objects, cache)
    assert (again / "experts" / "garch" / "model.pkl").read_bytes() == b"model of garch", "served from the cache"
    files = {**version_files(), "book.json": book_json(".")}
    publish(artifacts, "v2", files)
    newer = fetch_book_bundle(f"s3://{BUCKET}/models/", objects, cache)
    assert newer == cache / "v2" and (newer / "book.json").read_bytes() == book_json(".")
    assert sorted(p.name for p in (newer / "books").rglob("*")) == ["daily", "seed.json"], \
        "only the models and seeds this version's book names"


@pytest.mark.parametrize(("missing", "message"), [
    ("book.json", "models/v1/book.json: missing; this version holds no whole-book bundle"),
    ("gate.npz", "models/v1/gate.npz: missing; the bundle is incomplete"),
    ("experts/manifest.json", "models/v1/experts/manifest.json: missing; the book step runs this bundle's experts"),
    ("experts/garch/model.pkl", "models/v1/experts/garch/model.pkl: missing; expert 'garch'"),
    ("books/daily/m0/bundle.json", "models/v1/books/daily/m0/bundle.json: missing"),
    ("books/daily/m0/calibration.json", "models/v1/books/daily/m0/calibration.json: missing"),
    ("books/daily/m0/experts/trend/lgbm/model.pkl", "models/v1/books/daily/m0/experts/trend/lgbm/model.pkl: missing"),
    ("books/daily/seed.json", "models/v1/books/daily/seed.json: missing; book.json names it as a book's seed"),
])
def test_a_missing_file_is_named_and_nothing_is_cached(artifacts: ObjectStore, tmp_path: Path, missing: str,
                                                       message: str) -> None:
    files = version_files()
    del files[missing]
    publish(artifacts, "v1", files)
    with pytest.raises(BundleError, match=re.escape(message)):
        fetch_book_bundle(f"s3://{BUCKET}/models/", objects, tmp_path / "cache")
    cache = tmp_path / "cache"
    assert not cache.exists() or list(cache.iterdir()) == [], "a failed fetch leaves nothing a later call would reuse"


def test_no_registry_and_bad_pointers_are_named(artifacts: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=re.escape("neither book.json nor CURRENT found")):
        fetch_book_bundle(f"s3://{BUCKET}/models/", objects, tmp_path)
    publish(artifacts, "v1", {**version_files(), "book.json": book_json("../elsewhere")})
    with pytest.raises(BundleError, match=re.escape("model bundle '../elsewhere'; expected '.' or a folder inside")):
        fetch_book_bundle(f"s3://{BUCKET}/models/", objects, tmp_path)
    artifacts.put("models/CURRENT", b"../v1")
    with pytest.raises(BundleError, match=re.escape("CURRENT holds '../v1'; expected one version name")):
        fetch_book_bundle(f"s3://{BUCKET}/models/", objects, tmp_path)
    with pytest.raises(BundleError, match="names no bucket"):
        fetch_book_bundle("s3:///models/", objects, tmp_path)


def test_a_local_registry_is_used_in_place(tmp_path: Path) -> None:
    for key, data in version_files().items():
        (tmp_path / "registry" / "v1" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "registry" / "v1" / key).write_bytes(data)
    (tmp_path / "registry" / "CURRENT").write_text("v1\n")
    assert fetch_book_bundle(str(tmp_path / "registry"), objects, tmp_path / "cache") == tmp_path / "registry" / "v1"
    (tmp_path / "registry" / "v1" / "book.json").unlink()
    with pytest.raises(BundleError, match=re.escape("book.json: missing")):
        fetch_book_bundle(str(tmp_path / "registry"), objects, tmp_path / "cache")
