"""Monitoring stack: the alarm topic, and a dashboard and alarms for the storage layer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_docdb as docdb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.ops_dashboard import OpsDashboard

GIB = 1024**3


class MonitoringStack(Stack):
    """Encrypted SNS alarm topic; storage dashboard with RDS, DocumentDB and bucket metrics and alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        mysql: rds.DatabaseInstance,
        docdb_cluster: docdb.DatabaseCluster,
        buckets: Mapping[str, s3.IBucket],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.alarm_key = kms.Key(
            self,
            "AlarmTopicKey",
            description=f"signal-engine {config.name}: alarm topic encryption",
            enable_key_rotation=True,
            removal_policy=config.key_removal_policy,
        )
        # CloudWatch alarms publish to the encrypted topic, so CloudWatch needs the key.
        self.alarm_key.grant(
            iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey"
        )
        self.alarm_topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"signal-engine {config.name} alarms",
            master_key=self.alarm_key,
            enforce_ssl=True,
        )
        if config.alarm_email:
            self.alarm_topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        self.storage_dashboard = OpsDashboard(
            self,
            "StorageDashboard",
            alarm_topic=self.alarm_topic,
            dashboard_name=f"{config.construct_id}-Storage",
        )
        self._add_mysql(config, mysql)
        self._add_docdb(config, docdb_cluster)
        self._add_buckets(buckets)
        self.storage_dashboard.add_alarm_status()

    def _add_mysql(self, config: StageConfig, mysql: rds.DatabaseInstance) -> None:
        """RDS CPU, connections and free storage; alarms on CPU and free storage."""
        ops = self.storage_dashboard
        cpu = mysql.metric_cpu_utilization(period=Duration.minutes(5))
        free_storage = mysql.metric_free_storage_space(period=Duration.minutes(5), statistic="Minimum")
        cpu_alarm = ops.add_alarm(
            "MySqlCpuAlarm",
            metric=cpu,
            threshold=config.cpu_alarm_percent,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            description=f"MySQL CPU above {config.cpu_alarm_percent}% for 15 minutes",
        )
        storage_alarm = ops.add_alarm(
            "MySqlFreeStorageAlarm",
            metric=free_storage,
            threshold=config.free_storage_alarm_gib * GIB,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=1,
            description=f"MySQL free storage below {config.free_storage_alarm_gib} GiB",
        )
        ops.add_section(
            "RDS MySQL",
            ops.graph("CPU utilisation (%)", [cpu], thresholds=[cpu_alarm]),
            ops.graph("Connections", [mysql.metric_database_connections(period=Duration.minutes(5))]),
            ops.graph("Free storage (bytes)", [free_storage], thresholds=[storage_alarm]),
        )

    def _add_docdb(self, config: StageConfig, cluster: docdb.DatabaseCluster) -> None:
        """DocumentDB CPU, connections and memory; alarm on CPU."""
        ops = self.storage_dashboard

        def metric(name: str, statistic: str = "Average") -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/DocDB",
                metric_name=name,
                dimensions_map={"DBClusterIdentifier": cluster.cluster_identifier},
                statistic=statistic,
                period=Duration.minutes(5),
            )

        cpu = metric("CPUUtilization")
        cpu_alarm = ops.add_alarm(
            "DocDbCpuAlarm",
            metric=cpu,
            threshold=config.cpu_alarm_percent,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            description=f"DocumentDB CPU above {config.cpu_alarm_percent}% for 15 minutes",
        )
        ops.add_section(
            "DocumentDB",
            ops.graph("CPU utilisation (%)", [cpu], thresholds=[cpu_alarm]),
            ops.graph("Connections", [metric("DatabaseConnections")]),
            ops.graph("Freeable memory (bytes)", [metric("FreeableMemory", "Minimum")]),
        )

    def _add_buckets(self, buckets: Mapping[str, s3.IBucket]) -> None:
        """Daily bucket size and object count (S3 storage metrics are published once a day)."""

        def metric(bucket: s3.IBucket, name: str, storage_type: str, label: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/S3",
                metric_name=name,
                dimensions_map={"BucketName": bucket.bucket_name, "StorageType": storage_type},
                statistic="Average",
                period=Duration.days(1),
                label=label,
            )

        ops = self.storage_dashboard
        ops.add_section(
            "S3 buckets",
            ops.graph(
                "Size, Standard storage (bytes)",
                [metric(b, "BucketSizeBytes", "StandardStorage", name) for name, b in buckets.items()],
                width=12,
            ),
            ops.graph(
                "Objects",
                [metric(b, "NumberOfObjects", "AllStorageTypes", name) for name, b in buckets.items()],
                width=12,
            ),
        )
