"""One deployable copy of signal-engine (dev or prod): the stacks wired together."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stage, Tags
from constructs import Construct

from stacks.config import StageConfig
from stacks.monitoring import MonitoringStack
from stacks.network import NetworkStack
from stacks.storage import StorageStack


class SignalEngineStage(Stage):
    """Network, storage and monitoring stacks of one stage.

    Later stacks (collectors, training workflow, serving) are added here and take the attributes
    exposed below: `network.vpc`, `network.app_subnets`, `network.app_security_group`, the storage
    buckets, databases and secrets, and `monitoring.alarm_topic`.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        Tags.of(self).add("project", "signal-engine")
        Tags.of(self).add("stage", config.name)
        common: dict[str, Any] = {"termination_protection": config.termination_protection}

        self.network = NetworkStack(
            self,
            "Network",
            config=config,
            description=f"signal-engine {config.name}: VPC, endpoints, flow logs",
            **common,
        )
        self.storage = StorageStack(
            self,
            "Storage",
            config=config,
            vpc=self.network.vpc,
            database_subnets=self.network.database_subnets,
            app_subnets=self.network.app_subnets,
            app_security_group=self.network.app_security_group,
            secrets_manager_endpoint=self.network.secrets_manager_endpoint,
            description=f"signal-engine {config.name}: S3 buckets, RDS MySQL, DocumentDB",
            **common,
        )
        self.monitoring = MonitoringStack(
            self,
            "Monitoring",
            config=config,
            mysql=self.storage.mysql,
            docdb_cluster=self.storage.docdb,
            buckets=self.storage.buckets,
            description=f"signal-engine {config.name}: alarm topic, storage dashboard and alarms",
            **common,
        )
