"""The AWS calls each of our Lambda handlers makes, as IAM sees them.

tests/handlers/test_aws_calls.py records every botocore call while the handlers' code paths run against moto and
checks that this inventory lists exactly those (service, operation) pairs; tests/infra/test_access.py checks that
each entry is allowed to the function's role (and the KMS key behind the resource) in the synthesized templates.
``resource`` names the environment variable of the function the resource comes from (see ``resource_arns``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    """One API call: botocore's service and operation, the IAM action it needs, and where its resource comes from.

    ``resource`` is ``ENV_VARIABLE`` (an S3 URL, a table name, a secret ARN, a JSON map of endpoint names) and
    ``key`` a sample object key under the URL's prefix for S3 object calls (``""`` for the listing itself).
    """

    service: str
    operation: str
    action: str
    resource: str
    key: str = ""


SECRETS = (
    Call("secretsmanager", "GetSecretValue", "secretsmanager:GetSecretValue", "SIGNAL_ENGINE_DATABASE_SECRET"),
)

# The collectors (every module of lambda_src/collectors/ but export_bars): raw payload first, then Powertools'
# idempotency record (put when a window starts, updated when done, deleted when the collection fails), the stores.
COLLECTORS = (
    Call("s3", "PutObject", "s3:PutObject", "SIGNAL_ENGINE_OBJECT_STORE", "yahoo/chart/AAPL/2024-01-05.json"),
    Call("dynamodb", "PutItem", "dynamodb:PutItem", "IDEMPOTENCY_TABLE"),
    Call("dynamodb", "UpdateItem", "dynamodb:UpdateItem", "IDEMPOTENCY_TABLE"),
    Call("dynamodb", "DeleteItem", "dynamodb:DeleteItem", "IDEMPOTENCY_TABLE"),
    *SECRETS,
    Call("secretsmanager", "GetSecretValue", "secretsmanager:GetSecretValue", "SIGNAL_ENGINE_DOCUMENT_SECRET"),
)

# The bars export: lists the files already there (longer history is kept), writes one CSV per symbol; with
# EXPORT_NEWS the same for each symbol's news file, read from the document store (DocumentDB via its secret).
EXPORT_BARS = (
    Call("s3", "ListObjectsV2", "s3:ListBucket", "SIGNAL_ENGINE_DATASETS_STORE", "bars/1d/"),
    Call("s3", "PutObject", "s3:PutObject", "SIGNAL_ENGINE_DATASETS_STORE", "bars/1d/AAPL.csv"),
    Call("s3", "ListObjectsV2", "s3:ListBucket", "SIGNAL_ENGINE_DATASETS_STORE", "news/"),
    Call("s3", "PutObject", "s3:PutObject", "SIGNAL_ENGINE_DATASETS_STORE", "news/AAPL.jsonl"),
    *SECRETS,
    Call("secretsmanager", "GetSecretValue", "secretsmanager:GetSecretValue", "SIGNAL_ENGINE_DOCUMENT_SECRET"),
)

# The combiner: the bundle (models/CURRENT, then the version's files), a warm environment's HEAD of CURRENT to
# notice a newly promoted version (IAM authorizes HeadObject as s3:GetObject), the experts, the audit log's secret,
# and, for a bundle with the text expert, the document store's secret (the headlines it reads).
# A batch job: its request stored and the worker started (POST /signals/batch/jobs), its answer read (GET).
JOB = "0123456789abcdef0123456789abcdef"
NEWS_SECRET = Call("secretsmanager", "GetSecretValue", "secretsmanager:GetSecretValue", "SIGNAL_ENGINE_DOCUMENT_SECRET")
COMBINER = (
    Call("s3", "GetObject", "s3:GetObject", "MODEL_BUNDLE_URI", "CURRENT"),
    Call("s3", "HeadObject", "s3:GetObject", "MODEL_BUNDLE_URI", "CURRENT"),
    Call("sagemaker-runtime", "InvokeEndpoint", "sagemaker:InvokeEndpoint", "EXPERT_ENDPOINTS"),
    *SECRETS,
    NEWS_SECRET,
    Call("s3", "PutObject", "s3:PutObject", "BATCH_JOBS_URI", f"{JOB}/request.json"),
    Call("s3", "GetObject", "s3:GetObject", "BATCH_JOBS_URI", f"{JOB}/result.json"),
    Call("lambda", "Invoke", "lambda:InvokeFunction", "BATCH_WORKER_FUNCTION"),
)

# The batch worker: the bundle and the experts as the combiner, the job's request read and its answer written.
BATCH_WORKER = (
    Call("s3", "GetObject", "s3:GetObject", "MODEL_BUNDLE_URI", "CURRENT"),
    Call("s3", "HeadObject", "s3:GetObject", "MODEL_BUNDLE_URI", "CURRENT"),
    Call("sagemaker-runtime", "InvokeEndpoint", "sagemaker:InvokeEndpoint", "EXPERT_ENDPOINTS"),
    Call("s3", "GetObject", "s3:GetObject", "BATCH_JOBS_URI", f"{JOB}/request.json"),
    Call("s3", "PutObject", "s3:PutObject", "BATCH_JOBS_URI", f"{JOB}/result.json"),
    *SECRETS,
    NEWS_SECRET,
)

# The book step: the registry's CURRENT, the version's listing and files (book.json, bundles, experts), the store's
# secret; for a bundle with the news slot, the document store's secret and the text expert on the experts' endpoint.
# IAM authorizes ListObjectsV2 as s3:ListBucket with the listed prefix as s3:prefix.
BOOK_STEP = (
    Call("s3", "GetObject", "s3:GetObject", "MODEL_BUNDLE_URI", "CURRENT"),
    Call("s3", "ListObjectsV2", "s3:ListBucket", "MODEL_BUNDLE_URI", "v1/"),
    Call("s3", "GetObject", "s3:GetObject", "MODEL_BUNDLE_URI", "v1/books/daily/short/experts/manifest.json"),
    *SECRETS,
    NEWS_SECRET,
    Call("sagemaker-runtime", "InvokeEndpoint", "sagemaker:InvokeEndpoint", "EXPERT_ENDPOINTS"),
)

# The backtest fan-out's functions (plan, batch, check, merge): each symbol's bars, then the run's folder: copied
# inputs and batches.json (plan), the inputs listed and read, a batch's folder written (batch), every batch listed
# and read, the result written (merge).
BACKTEST_FANOUT = (
    Call("s3", "GetObject", "s3:GetObject", "DATASETS_STORE", "AAPL.csv"),
    Call("s3", "PutObject", "s3:PutObject", "BACKTESTS_STORE", "run-1/inputs/prices/AAPL.csv"),
    Call("s3", "ListObjectsV2", "s3:ListBucket", "BACKTESTS_STORE", "run-1/batches/1/"),
    Call("s3", "GetObject", "s3:GetObject", "BACKTESTS_STORE", "run-1/batches/1/batch.json"),
)

LAMBDA_CALLS: dict[str, tuple[Call, ...]] = {"collectors": COLLECTORS, "export_bars": EXPORT_BARS,
                                             "combiner": COMBINER, "batch_worker": BATCH_WORKER,
                                             "book_step": BOOK_STEP,
                                             "backtest_fanout": BACKTEST_FANOUT}


def lambda_group(handler: str) -> str | None:
    """The inventory of a function's ``Handler`` (``collectors.yahoo_bars.handler``; for a container image, its
    ``ImageConfig.Command``), or None for CDK's own."""
    if handler == "book_step.handler.handler":
        return "book_step"
    if handler == "combiner.handler.handler":
        return "combiner"
    if handler == "combiner.handler.batch_worker":
        return "batch_worker"
    if handler.startswith("backtest_fanout.handler."):
        return "backtest_fanout"
    if handler == "collectors.export_bars.handler":
        return "export_bars"
    if handler.startswith("collectors.") and handler.endswith(".handler"):
        return "collectors"
    return None
