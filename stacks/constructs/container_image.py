"""The training and inference images of containers/, as CDK Docker image assets.

`cdk synth` does not run Docker for a DockerImageAsset: it fingerprints the build context (the files left after
the exclusions below) and copies it into cdk.out with an asset manifest entry; the image is built and pushed to
the CDK bootstrap ECR repository by `cdk deploy` (cdk-assets), which is the only step that needs Docker.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import IgnoreMode
from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("training", "training-cpu", "inference")
# The build context is the repository root, reduced to what the images install: the package, its metadata and
# the SageMaker entry points. Everything else (virtualenv, node_modules, cdk.out, data, tests) stays out, so the
# asset hash changes only when the image's inputs do and synthesis copies a few megabytes, not gigabytes.
BUILD_CONTEXT = ("signal_engine", "sagemaker_jobs", "containers", "pyproject.toml", "README.md", "LICENSE")
EXCLUDE = ["*", *(f"!{path}" for path in BUILD_CONTEXT), "**/__pycache__", "**/*.pyc"]


def container_image(scope: Construct, construct_id: str, name: str) -> ecr_assets.DockerImageAsset:
    """The image built from containers/<name>/Dockerfile (x86_64; SageMaker GPU instances are x86_64)."""
    if name not in IMAGES:
        raise ValueError(f"unknown image {name!r}; expected one of {IMAGES}")
    dockerfile = ROOT / "containers" / name / "Dockerfile"
    if not dockerfile.is_file():
        raise FileNotFoundError(
            f"{dockerfile} is missing: the {name} image has no Dockerfile (see containers/README.md)"
        )
    return ecr_assets.DockerImageAsset(
        scope,
        construct_id,
        directory=str(ROOT),
        file=str(dockerfile.relative_to(ROOT)),
        platform=ecr_assets.Platform.LINUX_AMD64,
        exclude=EXCLUDE,
        ignore_mode=IgnoreMode.DOCKER,
        display_name=f"signal-engine {name} image",
    )
