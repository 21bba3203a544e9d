"""Stage configuration: dev and prod as plain data, parsed into a frozen dataclass."""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds

from signal_engine.serving.schema import MAX_BATCH

# Every value a stage may differ in. Keys match the StageConfig fields one to one; app.py can merge
# overrides from the CDK context key "signal-engine:<stage>" (e.g. `cdk synth -c 'signal-engine:dev={...}'`).
# The collector modules of lambda_src/collectors/, one Lambda each.
COLLECTORS = (
    "yahoo_bars",
    "yahoo_statistics",
    "yahoo_fundamentals",
    "yahoo_options",
    "yahoo_news",
    "nasdaq_quotes",
    "nasdaq_bars",
    "nasdaq_earnings",
    "nasdaq_financials",
    "nasdaq_news",
)

# EventBridge schedules in UTC. The regular US session closes at 21:00 UTC in winter and 20:00 UTC in summer,
# so end-of-day data is fetched from 22:30 UTC on weekdays; quotes every 30 minutes while the session may be
# open (13:30-21:00 UTC covers both offsets); news hourly; fundamentals and financials weekly. Cron cannot
# skip exchange holidays: on a holiday the run finds no new bars and the stores dedupe what it fetches.
_COLLECTORS_DEV: dict[str, Any] = {
    "collectors_enabled": True,
    "collector_schedules": {
        "yahoo_bars": "cron(30 22 ? * MON-FRI *)",
        "nasdaq_bars": "cron(45 22 ? * MON-FRI *)",
        "yahoo_options": "cron(0 23 ? * MON-FRI *)",
        "yahoo_statistics": "cron(0/30 13-21 ? * MON-FRI *)",
        "nasdaq_quotes": "cron(15/30 13-21 ? * MON-FRI *)",
        "yahoo_news": "cron(0 * * * ? *)",
        "nasdaq_news": "cron(30 * * * ? *)",
        "nasdaq_earnings": "cron(15 23 ? * MON-FRI *)",
        "yahoo_fundamentals": "cron(0 8 ? * SAT *)",
        "nasdaq_financials": "cron(30 8 ? * SAT *)",
    },
    # The bars export (lambda_src/collectors/export_bars.py) writes the stored daily bars to the datasets bucket as
    # the training input (bars/1d/<SYMBOL>.csv): on weekdays after both bar collectors (22:30, 22:45 UTC, plus their
    # retries), so Friday's export is in place well before the weekly training run (train_schedule, Saturday).
    "bars_export_schedule": "cron(45 23 ? * MON-FRI *)",
    "collector_symbols": "SPY,QQQ,AAPL,MSFT,NVDA",
    "collector_memory_mb": 1024,
    "collector_timeout_seconds": 300,
    # Lambda retries a failed asynchronous invocation 0-2 times before the event goes to the DLQ.
    "collector_retry_attempts": 2,
    # Concurrent runs reserved per collector function (the ten collectors and the bars export); 0 reserves none.
    # Lambda keeps 100 of the account's concurrency unreserved, and new accounts start with a quota of 10, so any
    # reservation needs the quota "Concurrent executions" (L-B99A9384) raised to at least 100 + 11 x this value
    # first (README, Deploying to AWS). No stage reserves by default; each schedule starts one run at a time.
    "collector_reserved_concurrency": 0,
}

_TRAINING_DEV: dict[str, Any] = {
    # GPU instance for the expert training jobs (the NVIDIA TensorFlow image); g4dn is the cheapest NVIDIA GPU.
    "training_instance_type": "ml.g4dn.xlarge",
    # CPU instance for dataset preparation, gate/meta-model training and evaluation.
    "processing_instance_type": "ml.m5.xlarge",
    "training_max_runtime_hours": 4,
    "training_profile": "quick",
}

_SERVING_DEV: dict[str, Any] = {
    # The experts' endpoint is created and updated by the training workflow's deploy step (the model data is
    # the bundle it just trained), on this instance type.
    "expert_instance_type": "ml.m5.large",
    # "realtime" keeps expert_instance_type running (billed per hour); "serverless" uses SageMaker Serverless
    # Inference (billed per request and second, cold starts after idle, no autoscaling to set up).
    "expert_endpoint_mode": "realtime",
    "expert_serverless_memory_mb": 2048,
    "expert_serverless_max_concurrency": 5,
    # Autoscaling registers against the endpoint, which exists only after the first training run deployed it:
    # deploy once, run training, then set expert_autoscaling true and deploy again.
    "expert_autoscaling": False,
    "expert_min_instances": 1,
    "expert_max_instances": 2,
    "expert_invocations_per_instance": 300,
    "expert_deadline_ms": 2500,
    "combiner_memory_mb": 512,
    # Items of one POST /signals/batch call: each item's experts are asked in turn within the combiner's timeout
    # (expert_deadline_ms + 10 s); docs/research/scaling.md measured about 0.2 s per item through the endpoint
    # client on a 2-core machine, and the combiner's 512 MB get about a third of a vCPU. A larger batch is refused
    # naming this limit: split the universe into calls of this size.
    "max_batch_requests": 25,
    "api_rate_limit": 5,
    "api_burst_limit": 10,
    "api_quota_per_day": 5000,
    # Who may call the Signal API (IAM SigV4 on every method, and this list in the API's resource policy): an
    # account id or its root ARN (any principal of that account its IAM policies allow), a role or user ARN, or
    # "this-account" (the deploying account).
    "api_allowed_principals": ["this-account"],
}

# The live book's step (lambda_src/book_step/, stacks/book.py): a container-image Lambda run after each bar collection.
_BOOK_DEV: dict[str, Any] = {
    # The experts run in process; LightGBM and the bundle's arrays want room, and memory buys CPU in Lambda.
    "book_step_memory_mb": 3008,
    "book_step_timeout_seconds": 900,
    # The missed-step alarm fires when no step succeeded for this many hours (missing data breaches). Steps follow
    # the weekday bar collections, so the gap from Friday's to Monday's step (~72 h) must fit; at most 168 (7 days,
    # CloudWatch's longest evaluation range for hourly periods).
    "book_step_missed_after_hours": 80,
    # The waiting alarm fires when every step of this many consecutive days (UTC) reported a symbol the book waits
    # for (its latest stored bar lags the book's other symbols), so the book did not advance.
    "book_waiting_alarm_days": 2,
}

STAGES: dict[str, dict[str, Any]] = {
    "dev": {
        "construct_id": "SignalEngine-Dev",
        "termination_protection": False,
        # network
        "vpc_cidr": "10.20.0.0/16",
        "max_azs": 2,
        # One NAT gateway (~33 USD a month plus 0.045 USD/GB) so the collectors reach Yahoo Finance and
        # Nasdaq; a dev stage without collectors can set nat_gateways 0 and collectors_enabled false.
        "nat_gateways": 1,
        # Interface endpoints cost per AZ and hour; dev keeps one ENI per endpoint.
        "interface_endpoint_azs": 1,
        "flow_log_retention_days": 14,
        "log_retention_days": 14,
        # buckets
        # Dev buckets hold public market data that the collectors can fetch again and datasets/models that
        # training rebuilds, so `cdk destroy` empties and deletes them (CDK's auto-delete custom resource)
        # instead of leaving orphaned buckets behind. Prod retains every bucket.
        "bucket_removal_policy": "destroy",
        "auto_delete_objects": True,
        "raw_infrequent_access_after_days": 30,
        "raw_glacier_after_days": 90,
        "raw_expire_after_days": 365,
        "noncurrent_version_expire_after_days": 30,
        "access_log_expire_after_days": 90,
        # databases
        "database_removal_policy": "destroy",
        "deletion_protection": False,
        # MySQL 8.4 is the LTS release; 8.0 left RDS standard support on 2026-07-31 (Extended Support bills).
        # The major version only: RDS creates the region's default 8.4 minor and, with auto minor version upgrades
        # on, moves to newer minors in the maintenance window, so a fresh deploy never asks for a retired minor.
        # A full "8.4.x" (an aws-cdk-lib constant) pins a minor instead; RDS retires minors after about a year.
        "mysql_engine_version": "8.4",
        "mysql_instance_type": "t4g.micro",
        "mysql_allocated_storage_gib": 20,
        "mysql_max_allocated_storage_gib": 50,
        "mysql_multi_az": False,
        "docdb_instance_type": "t4g.medium",
        "docdb_instances": 1,
        "backup_retention_days": 7,
        "enhanced_monitoring_interval_seconds": 0,
        "secret_rotation_days": 30,
        # schedules (UTC); backup windows must not overlap the maintenance windows
        "backup_window": "03:00-04:00",
        "maintenance_window": "sun:04:30-sun:05:30",
        "train_schedule": "cron(0 6 ? * SAT *)",
        **_COLLECTORS_DEV,
        **_TRAINING_DEV,
        **_SERVING_DEV,
        **_BOOK_DEV,
        # alarms
        "cpu_alarm_percent": 90,
        "free_storage_alarm_gib": 2,
        "alarm_email": None,
    },
    "prod": {
        "construct_id": "SignalEngine-Prod",
        "termination_protection": True,
        "vpc_cidr": "10.30.0.0/16",
        "max_azs": 2,
        # One NAT gateway gives collectors in the VPC internet egress; raise to 2 for an AZ-independent path.
        "nat_gateways": 1,
        "interface_endpoint_azs": 2,
        "flow_log_retention_days": 90,
        "log_retention_days": 90,
        "bucket_removal_policy": "retain",
        "auto_delete_objects": False,
        "raw_infrequent_access_after_days": 30,
        "raw_glacier_after_days": 180,
        "raw_expire_after_days": None,
        "noncurrent_version_expire_after_days": 90,
        "access_log_expire_after_days": 365,
        "database_removal_policy": "snapshot",
        "deletion_protection": True,
        "mysql_engine_version": "8.4",
        "mysql_instance_type": "m7g.large",
        "mysql_allocated_storage_gib": 100,
        "mysql_max_allocated_storage_gib": 500,
        "mysql_multi_az": True,
        "docdb_instance_type": "r6g.large",
        "docdb_instances": 2,
        "backup_retention_days": 30,
        "enhanced_monitoring_interval_seconds": 60,
        "secret_rotation_days": 30,
        "backup_window": "03:00-04:00",
        "maintenance_window": "sun:04:30-sun:05:30",
        "train_schedule": "cron(0 6 ? * SAT *)",
        **_COLLECTORS_DEV,
        **_TRAINING_DEV,
        "training_instance_type": "ml.g5.2xlarge",
        **_SERVING_DEV,
        "expert_min_instances": 1,
        "expert_max_instances": 4,
        "api_rate_limit": 50,
        "api_burst_limit": 100,
        "api_quota_per_day": 100000,
        **_BOOK_DEV,
        "cpu_alarm_percent": 80,
        "free_storage_alarm_gib": 10,
        "alarm_email": None,
    },
}

# MySQL major versions a stage may name without a minor (RDS picks and upgrades the minor).
MYSQL_MAJOR_VERSIONS = ("8.4", "8.0")
# Lambda's usual concurrent-executions quota per account and region (new accounts start lower, at 10).
DEFAULT_LAMBDA_CONCURRENCY = 1000
# api_allowed_principals: the deploying account, an account id, or an IAM root, role or user ARN.
THIS_ACCOUNT = "this-account"
API_PRINCIPAL = re.compile(
    rf"{THIS_ACCOUNT}|\d{{12}}|arn:aws(?:-cn|-us-gov)?:iam::\d{{12}}:(?:root|(?:role|user)/[\w+=,.@/-]+)")

# SageMaker instance families with NVIDIA GPUs (the training image is NVIDIA's TensorFlow container).
GPU_INSTANCE_FAMILIES = ("ml.g4dn.", "ml.g5.", "ml.g6.", "ml.g6e.", "ml.p3.", "ml.p4d.", "ml.p5.")

_REMOVAL_POLICIES = {
    "destroy": RemovalPolicy.DESTROY,
    "retain": RemovalPolicy.RETAIN,
    "snapshot": RemovalPolicy.SNAPSHOT,
}

# CloudWatch Logs accepts only these retention periods.
_RETENTION_DAYS = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class StageConfig:
    """Everything that differs between deployment stages."""

    name: str
    construct_id: str
    termination_protection: bool
    vpc_cidr: str
    max_azs: int
    nat_gateways: int
    interface_endpoint_azs: int
    flow_log_retention_days: int
    log_retention_days: int
    bucket_removal_policy: RemovalPolicy
    auto_delete_objects: bool
    raw_infrequent_access_after_days: int
    raw_glacier_after_days: int
    raw_expire_after_days: int | None
    noncurrent_version_expire_after_days: int
    access_log_expire_after_days: int
    database_removal_policy: RemovalPolicy
    deletion_protection: bool
    mysql_engine_version: str
    mysql_instance_type: str
    mysql_allocated_storage_gib: int
    mysql_max_allocated_storage_gib: int
    mysql_multi_az: bool
    docdb_instance_type: str
    docdb_instances: int
    backup_retention_days: int
    enhanced_monitoring_interval_seconds: int
    secret_rotation_days: int
    backup_window: str
    maintenance_window: str
    train_schedule: str
    collectors_enabled: bool
    collector_schedules: dict[str, str]
    bars_export_schedule: str
    collector_symbols: str
    collector_memory_mb: int
    collector_timeout_seconds: int
    collector_retry_attempts: int
    collector_reserved_concurrency: int
    training_instance_type: str
    processing_instance_type: str
    training_max_runtime_hours: int
    training_profile: str
    expert_instance_type: str
    expert_endpoint_mode: str
    expert_serverless_memory_mb: int
    expert_serverless_max_concurrency: int
    expert_autoscaling: bool
    expert_min_instances: int
    expert_max_instances: int
    expert_invocations_per_instance: int
    expert_deadline_ms: int
    combiner_memory_mb: int
    max_batch_requests: int
    api_rate_limit: int
    api_burst_limit: int
    api_quota_per_day: int
    api_allowed_principals: tuple[str, ...]
    book_step_memory_mb: int
    book_step_timeout_seconds: int
    book_step_missed_after_hours: int
    book_waiting_alarm_days: int
    cpu_alarm_percent: int
    free_storage_alarm_gib: int
    alarm_email: str | None

    def __post_init__(self) -> None:
        """Reject combinations that would synthesize but fail to deploy or lose data."""
        if self.nat_gateways < 0 or self.nat_gateways > self.max_azs:
            raise ValueError(f"{self.name}: nat_gateways must be between 0 and max_azs ({self.max_azs})")
        if not 1 <= self.interface_endpoint_azs <= self.max_azs:
            raise ValueError(f"{self.name}: interface_endpoint_azs must be between 1 and max_azs")
        if self.raw_infrequent_access_after_days < 30:
            raise ValueError(f"{self.name}: S3 allows STANDARD_IA transitions after 30 days at the earliest")
        if self.raw_glacier_after_days < self.raw_infrequent_access_after_days + 30:
            raise ValueError(
                f"{self.name}: raw_glacier_after_days must be at least 30 days after the IA transition"
            )
        expire = self.raw_expire_after_days
        if expire is not None and expire <= self.raw_glacier_after_days:
            raise ValueError(f"{self.name}: raw_expire_after_days must come after raw_glacier_after_days")
        if not 1 <= self.backup_retention_days <= 35:
            raise ValueError(f"{self.name}: backup_retention_days must be between 1 and 35")
        if self.enhanced_monitoring_interval_seconds not in (0, 1, 5, 10, 15, 30, 60):
            raise ValueError(
                f"{self.name}: enhanced_monitoring_interval_seconds must be 0, 1, 5, 10, 15, 30 or 60"
            )
        if self.mysql_max_allocated_storage_gib < self.mysql_allocated_storage_gib:
            raise ValueError(f"{self.name}: mysql_max_allocated_storage_gib must be >= the allocated storage")
        if self.bucket_removal_policy == RemovalPolicy.SNAPSHOT:
            raise ValueError(f"{self.name}: buckets and log groups take removal policy 'destroy' or 'retain'")
        if self.auto_delete_objects and self.bucket_removal_policy != RemovalPolicy.DESTROY:
            raise ValueError(f"{self.name}: auto_delete_objects needs bucket_removal_policy 'destroy'")
        if self.deletion_protection and self.database_removal_policy == RemovalPolicy.DESTROY:
            raise ValueError(
                f"{self.name}: a deletion-protected database cannot have removal policy 'destroy'"
            )
        version = self.mysql_engine_version
        if version not in MYSQL_MAJOR_VERSIONS and not (
            version.startswith(tuple(f"{major}." for major in MYSQL_MAJOR_VERSIONS))
            and hasattr(rds.MysqlEngineVersion, _mysql_constant(version))
        ):
            raise ValueError(
                f"{self.name}: mysql_engine_version {version!r} is neither a major version ('8.4', '8.0': RDS picks "
                "and upgrades the minor) nor an 8.0/8.4 minor that aws-cdk-lib knows (e.g. '8.4.10')"
            )
        self._check_collectors()
        self._check_training_and_serving()
        self._check_book_step()
        for days in (self.flow_log_retention_days, self.log_retention_days):
            if days not in _RETENTION_DAYS:
                raise ValueError(f"{self.name}: log retention {days} is not one of {sorted(_RETENTION_DAYS)}")

    def _check_collectors(self) -> None:
        """Collectors need internet egress, a schedule per collector, and Lambda's limits."""
        if self.collectors_enabled and self.nat_gateways < 1:
            raise ValueError(
                f"{self.name}: collectors_enabled needs nat_gateways >= 1 (the collectors call Yahoo Finance and "
                "Nasdaq from the VPC); set nat_gateways 1 or collectors_enabled false"
            )
        unknown = sorted(set(self.collector_schedules) - set(COLLECTORS))
        missing = sorted(set(COLLECTORS) - set(self.collector_schedules))
        if unknown or missing:
            raise ValueError(
                f"{self.name}: collector_schedules needs exactly one schedule per collector; "
                f"unknown: {unknown or 'none'}, missing: {missing or 'none'}"
            )
        for collector, expression in self.collector_schedules.items():
            if not re.fullmatch(r"(cron|rate)\(.+\)", expression):
                raise ValueError(
                    f"{self.name}: collector_schedules.{collector} must be an EventBridge expression such as "
                    f"'cron(30 22 ? * MON-FRI *)' or 'rate(1 hour)', got {expression!r}"
                )
        if not re.fullmatch(r"(cron|rate)\(.+\)", self.bars_export_schedule):
            raise ValueError(
                f"{self.name}: bars_export_schedule must be an EventBridge expression such as "
                f"'cron(45 23 ? * MON-FRI *)', got {self.bars_export_schedule!r}"
            )
        if not re.fullmatch(r"(cron|rate)\(.+\)", self.train_schedule):
            raise ValueError(f"{self.name}: train_schedule must be a cron(...) or rate(...) expression")
        if not [s for s in self.collector_symbols.split(",") if s.strip()]:
            raise ValueError(f"{self.name}: collector_symbols needs at least one symbol, e.g. 'SPY,QQQ'")
        if not 128 <= self.collector_memory_mb <= 10240:
            raise ValueError(f"{self.name}: collector_memory_mb must be between 128 and 10240")
        if not 1 <= self.collector_timeout_seconds <= 900:
            raise ValueError(f"{self.name}: collector_timeout_seconds must be between 1 and 900")
        if not 0 <= self.collector_retry_attempts <= 2:
            raise ValueError(f"{self.name}: collector_retry_attempts must be 0, 1 or 2 (Lambda's async retries)")
        if self.collector_reserved_concurrency < 0:
            raise ValueError(f"{self.name}: collector_reserved_concurrency must be 0 (none reserved) or more")
        reserved = self.collector_reserved_concurrency * (len(COLLECTORS) + 1)
        if reserved > DEFAULT_LAMBDA_CONCURRENCY - 100:
            raise ValueError(
                f"{self.name}: collector_reserved_concurrency {self.collector_reserved_concurrency} reserves "
                f"{reserved} executions for the {len(COLLECTORS) + 1} collector functions; Lambda keeps 100 "
                f"unreserved, so that exceeds even the usual quota of {DEFAULT_LAMBDA_CONCURRENCY} (new accounts "
                "have 10): lower it, or 0 to reserve none"
            )

    def _check_training_and_serving(self) -> None:
        """Instance types, endpoint mode and API limits that SageMaker and API Gateway accept."""
        for key in ("training_instance_type", "processing_instance_type", "expert_instance_type"):
            if not getattr(self, key).startswith("ml."):
                raise ValueError(f"{self.name}: {key} must be a SageMaker instance type such as 'ml.m5.large'")
        if not self.training_instance_type.startswith(GPU_INSTANCE_FAMILIES):
            raise ValueError(
                f"{self.name}: training_instance_type {self.training_instance_type!r} has no NVIDIA GPU; "
                f"use one of the families {', '.join(GPU_INSTANCE_FAMILIES)}"
            )
        if self.training_profile not in ("quick", "full"):
            raise ValueError(f"{self.name}: training_profile must be 'quick' or 'full'")
        if not 1 <= self.training_max_runtime_hours <= 120:
            raise ValueError(f"{self.name}: training_max_runtime_hours must be between 1 and 120")
        if self.expert_endpoint_mode not in ("realtime", "serverless"):
            raise ValueError(f"{self.name}: expert_endpoint_mode must be 'realtime' or 'serverless'")
        if self.expert_endpoint_mode == "serverless" and self.expert_autoscaling:
            raise ValueError(f"{self.name}: expert_autoscaling applies to realtime endpoints; serverless ones scale "
                             "by themselves up to expert_serverless_max_concurrency")
        if self.expert_serverless_memory_mb not in range(1024, 6145, 1024):
            raise ValueError(f"{self.name}: expert_serverless_memory_mb must be 1024, 2048, ..., 6144")
        if not 1 <= self.expert_serverless_max_concurrency <= 200:
            raise ValueError(f"{self.name}: expert_serverless_max_concurrency must be between 1 and 200")
        if not 1 <= self.expert_min_instances <= self.expert_max_instances:
            raise ValueError(f"{self.name}: need 1 <= expert_min_instances <= expert_max_instances")
        if self.expert_invocations_per_instance < 1:
            raise ValueError(f"{self.name}: expert_invocations_per_instance must be at least 1")
        if not 100 <= self.expert_deadline_ms <= 25000:
            raise ValueError(
                f"{self.name}: expert_deadline_ms must be between 100 and 25000 (API Gateway times out at 29 s)"
            )
        if not 128 <= self.combiner_memory_mb <= 10240:
            raise ValueError(f"{self.name}: combiner_memory_mb must be between 128 and 10240")
        if not 1 <= self.max_batch_requests <= MAX_BATCH:
            raise ValueError(f"{self.name}: max_batch_requests must be between 1 and {MAX_BATCH} (the Signal API's "
                             "largest batch)")
        if not 0 < self.api_rate_limit <= self.api_burst_limit:
            raise ValueError(f"{self.name}: need 0 < api_rate_limit <= api_burst_limit")
        if self.api_quota_per_day < 1:
            raise ValueError(f"{self.name}: api_quota_per_day must be at least 1")
        if not self.api_allowed_principals:
            raise ValueError(f"{self.name}: api_allowed_principals needs at least one caller, e.g. "
                             f"[\"{THIS_ACCOUNT}\"] (the deploying account) or a role ARN")
        for principal in self.api_allowed_principals:
            if not API_PRINCIPAL.fullmatch(principal):
                raise ValueError(
                    f"{self.name}: api_allowed_principals entry {principal!r} is not a 12-digit account id, an IAM "
                    f"ARN (arn:aws:iam::123456789012:root, :role/NAME or :user/NAME) or \"{THIS_ACCOUNT}\"")

    def _check_book_step(self) -> None:
        """Lambda's limits and CloudWatch's longest evaluation range (7 days of hourly periods)."""
        if not 1024 <= self.book_step_memory_mb <= 10240:
            raise ValueError(f"{self.name}: book_step_memory_mb must be between 1024 and 10240 (the experts run in "
                             "process)")
        if not 60 <= self.book_step_timeout_seconds <= 900:
            raise ValueError(f"{self.name}: book_step_timeout_seconds must be between 60 and 900")
        if not 24 <= self.book_step_missed_after_hours <= 168:
            raise ValueError(f"{self.name}: book_step_missed_after_hours must be between 24 and 168 (steps follow the "
                             "daily bar collections; CloudWatch evaluates at most 7 days of hourly periods)")
        if not 1 <= self.book_waiting_alarm_days <= 7:
            raise ValueError(f"{self.name}: book_waiting_alarm_days must be between 1 and 7")

    @property
    def symbols(self) -> tuple[str, ...]:
        """The collectors' default symbols."""
        return tuple(s.strip().upper() for s in self.collector_symbols.split(",") if s.strip())

    @property
    def is_production(self) -> bool:
        """Whether this stage holds data that must survive a `cdk destroy`."""
        return self.database_removal_policy != RemovalPolicy.DESTROY

    @property
    def mysql_engine(self) -> rds.MysqlEngineVersion:
        """The MySQL engine version: major only ("8.4") or a pinned minor (MysqlEngineVersion.VER_8_4_10)."""
        if self.mysql_engine_version in MYSQL_MAJOR_VERSIONS:
            return rds.MysqlEngineVersion.of(self.mysql_engine_version, self.mysql_engine_version)
        constant = getattr(rds.MysqlEngineVersion, _mysql_constant(self.mysql_engine_version))
        return typing.cast(rds.MysqlEngineVersion, constant)

    @property
    def flow_log_retention(self) -> logs.RetentionDays:
        """Flow log retention as the CDK enum."""
        return _RETENTION_DAYS[self.flow_log_retention_days]

    @property
    def log_retention(self) -> logs.RetentionDays:
        """Retention of service logs (database exports) as the CDK enum."""
        return _RETENTION_DAYS[self.log_retention_days]

    @property
    def log_removal_policy(self) -> RemovalPolicy:
        """Log groups and buckets share one policy: kept in prod, deleted with a dev stack."""
        return self.bucket_removal_policy

    @property
    def key_removal_policy(self) -> RemovalPolicy:
        """KMS keys outlive the stack whenever encrypted data (buckets, snapshots) may outlive it."""
        if (
            self.bucket_removal_policy == RemovalPolicy.DESTROY
            and self.database_removal_policy == RemovalPolicy.DESTROY
        ):
            return RemovalPolicy.DESTROY
        return RemovalPolicy.RETAIN


def parse_stage_config(name: str, raw: Mapping[str, Any]) -> StageConfig:
    """Build a StageConfig from plain data, naming any unknown, missing or mistyped key."""
    fields = {f.name: f for f in dataclasses.fields(StageConfig) if f.name != "name"}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(f"{name}: unknown stage setting(s): {', '.join(unknown)}")
    missing = sorted(set(fields) - set(raw))
    if missing:
        raise ValueError(f"{name}: missing stage setting(s): {', '.join(missing)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key.endswith("removal_policy"):
            if value not in _REMOVAL_POLICIES:
                raise ValueError(f"{name}: {key} must be one of {sorted(_REMOVAL_POLICIES)}, got {value!r}")
            values[key] = _REMOVAL_POLICIES[value]
            continue
        expected = fields[key].type
        if not _matches(value, str(expected)):
            raise ValueError(f"{name}: {key} must be {expected}, got {value!r}")
        values[key] = dict(value) if isinstance(value, dict) else tuple(value) if isinstance(value, list) else value
    return StageConfig(name=name, **values)


def load_stage_config(name: str, overrides: Mapping[str, Any] | None = None) -> StageConfig:
    """Return the configuration of stage `name` ("dev" or "prod"), with optional overrides merged in."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; expected one of {sorted(STAGES)}")
    return parse_stage_config(name, {**STAGES[name], **(overrides or {})})


def _mysql_constant(version: str) -> str:
    """Name of the MysqlEngineVersion constant for a version string: "8.0.46" -> "VER_8_0_46"."""
    return "VER_" + version.replace(".", "_")


def _matches(value: Any, annotation: str) -> bool:
    """Check a plain value against the string annotation of a StageConfig field."""
    if annotation.endswith(" | None") and value is None:
        return True
    base = annotation.removesuffix(" | None")
    if base == "bool":
        return isinstance(value, bool)
    if base == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if base == "str":
        return isinstance(value, str)
    if base == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if base == "tuple[str, ...]":
        return isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)
    if base == "dict[str, str]":
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    raise TypeError(f"unsupported StageConfig field type {annotation}")
