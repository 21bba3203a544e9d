"""Stage configuration: dev and prod as plain data, parsed into a frozen dataclass."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds

# Every value a stage may differ in. Keys match the StageConfig fields one to one; app.py can merge
# overrides from the CDK context key "signal-engine:<stage>" (e.g. `cdk synth -c 'signal-engine:dev={...}'`).
STAGES: dict[str, dict[str, Any]] = {
    "dev": {
        "construct_id": "SignalEngine-Dev",
        "termination_protection": False,
        # network
        "vpc_cidr": "10.20.0.0/16",
        "max_azs": 2,
        # No NAT in dev: app subnets are isolated and reach AWS through VPC endpoints only.
        "nat_gateways": 0,
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
        "mysql_engine_version": "8.4.10",
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
        "collect_schedule": "cron(30 22 ? * MON-FRI *)",
        "train_schedule": "cron(0 6 ? * SAT *)",
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
        "mysql_engine_version": "8.4.10",
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
        "collect_schedule": "cron(30 22 ? * MON-FRI *)",
        "train_schedule": "cron(0 6 ? * SAT *)",
        "cpu_alarm_percent": 80,
        "free_storage_alarm_gib": 10,
        "alarm_email": None,
    },
}

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
    collect_schedule: str
    train_schedule: str
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
        if not self.mysql_engine_version.startswith(("8.0.", "8.4.")) or not hasattr(
            rds.MysqlEngineVersion, _mysql_constant(self.mysql_engine_version)
        ):
            raise ValueError(
                f"{self.name}: MySQL {self.mysql_engine_version} is not an 8.0/8.4 version in aws-cdk-lib"
            )
        for days in (self.flow_log_retention_days, self.log_retention_days):
            if days not in _RETENTION_DAYS:
                raise ValueError(f"{self.name}: log retention {days} is not one of {sorted(_RETENTION_DAYS)}")

    @property
    def is_production(self) -> bool:
        """Whether this stage holds data that must survive a `cdk destroy`."""
        return self.database_removal_policy != RemovalPolicy.DESTROY

    @property
    def mysql_engine(self) -> rds.MysqlEngineVersion:
        """The MySQL engine version constant (e.g. MysqlEngineVersion.VER_8_0_46)."""
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
        values[key] = value
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
    raise TypeError(f"unsupported StageConfig field type {annotation}")
