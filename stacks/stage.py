"""One deployable copy of signal-engine (dev or prod): the stacks wired together."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aspects, Stage, Tags
from constructs import Construct

from signal_engine.serving.batch_jobs import JOBS_PREFIX
from stacks.book import BookStack
from stacks.collectors import (
    BAR_COLLECTORS,
    DATASETS_BARS_PREFIX,
    DATASETS_NEWS_PREFIX,
    RAW_PREFIX,
    CollectorsStack,
)
from stacks.config import StageConfig
from stacks.constructs.checkov_skips import SkipCheckovOnCdkInternals
from stacks.constructs.encryption import EncryptLogGroups, operations_key
from stacks.constructs.nag import skip_checkov
from stacks.constructs.sagemaker_role import sagemaker_role
from stacks.monitoring import MonitoringStack
from stacks.network import NetworkStack
from stacks.serving import MODELS_PREFIX, ServingStack, experts_endpoint_name
from stacks.storage import StorageStack
from stacks.training import DATASET_PREFIX as TRAINING_DATASET_PREFIX
from stacks.training import TrainingStack, acknowledge_workflow_grants
from step_functions.backtest_fanout import BACKTESTS_PREFIX


class SignalEngineStage(Stage):
    """The seven stacks of one stage: Network, Storage, Monitoring, Collectors (when `collectors_enabled`),
    Training, Serving and Book (the live book's step, run after each bar collection).

    The workload stacks take what the first three expose: `network.vpc`, `network.app_subnets`,
    `network.app_security_group`, the storage buckets, databases, secrets and prefix policies, and
    `monitoring.alarm_topic`. The SageMaker execution role is created in Storage (beside its buckets).
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
        # CloudWatch Logs of every stack and the Lambda environments; in the first stack, which all others use.
        self.operations_key = operations_key(self.network, "OperationsKey", config=config)
        Aspects.of(self).add(EncryptLogGroups(self.operations_key))
        Aspects.of(self).add(SkipCheckovOnCdkInternals())
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
        self.collectors: CollectorsStack | None = None
        if config.collectors_enabled:
            self.collectors = CollectorsStack(
                self,
                "Collectors",
                config=config,
                vpc=self.network.vpc,
                app_subnets=self.network.app_subnets,
                app_security_group=self.network.app_security_group,
                raw_bucket=self.storage.raw_bucket,
                raw_payloads_policy=self.storage.prefix_access_policy(
                    "CollectorsRawPayloads",
                    bucket=self.storage.raw_bucket,
                    prefix=RAW_PREFIX,
                    actions=["s3:PutObject", "s3:GetObject"],
                    description="signal-engine collectors: keep raw payloads and read them back to parse",
                ),
                mysql_secret=self.storage.mysql_secret,
                docdb_secret=self.storage.docdb_secret,
                alarm_topic=self.monitoring.alarm_topic,
                environment_key=self.operations_key,
                datasets_bucket=self.storage.datasets_bucket,
                datasets_bars_policy=self.storage.prefix_access_policy(
                    "ExportBarsDatasets",
                    bucket=self.storage.datasets_bucket,
                    prefix=DATASETS_BARS_PREFIX,
                    actions=["s3:GetObject", "s3:PutObject"],
                    description="signal-engine bars export: write the training input CSVs under bars/ (and read "
                    "them back to never replace a longer history)",
                ),
                datasets_news_policy=self.storage.prefix_access_policy(
                    "ExportNewsDatasets",
                    bucket=self.storage.datasets_bucket,
                    prefix=DATASETS_NEWS_PREFIX,
                    actions=["s3:GetObject", "s3:PutObject"],
                    description="signal-engine bars export: write the stored news under news/ for the news slot's "
                    "training (and read it back to never replace a longer file)",
                ),
                description=f"signal-engine {config.name}: collector Lambdas, schedules, DLQ, idempotency table",
                **common,
            )
        experts_endpoint = experts_endpoint_name(config)
        # The role of the training jobs and of the experts' model lives beside the buckets it reads and writes
        # (Storage), so that its bucket grants name the buckets directly rather than through cross-stack outputs.
        self.sagemaker_role = sagemaker_role(
            self.storage,
            "SageMakerRole",
            description="signal-engine SageMaker training jobs and expert endpoint",
            log_groups=["/aws/sagemaker/TrainingJobs", "/aws/sagemaker/Endpoints"],
        )
        self.training = TrainingStack(
            self,
            "Training",
            config=config,
            vpc=self.network.vpc,
            app_subnets=self.network.app_subnets,
            app_security_group=self.network.app_security_group,
            datasets_bucket=self.storage.datasets_bucket,
            artifacts_bucket=self.storage.artifacts_bucket,
            sagemaker_role=self.sagemaker_role,
            experts_endpoint=experts_endpoint,
            alarm_topic=self.monitoring.alarm_topic,
            backtest_policies=[
                self.storage.prefix_access_policy(
                    "BacktestBarsRead",
                    bucket=self.storage.datasets_bucket,
                    prefix=TRAINING_DATASET_PREFIX,
                    actions=["s3:GetObject"],
                    description="signal-engine backtest fan-out: read each symbol's bars (the plan copies them)",
                ),
                self.storage.prefix_access_policy(
                    "BacktestRuns",
                    bucket=self.storage.artifacts_bucket,
                    prefix=BACKTESTS_PREFIX,
                    actions=["s3:GetObject", "s3:PutObject"],
                    description="signal-engine backtest fan-out: the runs' inputs, batches and merged results",
                ),
            ],
            environment_key=self.operations_key,
            description=f"signal-engine {config.name}: training images, Step Functions workflow, schedule, "
            "backtest fan-out",
            **common,
        )
        acknowledge_workflow_grants(self.sagemaker_role)
        skip_checkov(
            self.training.state_machine.role.node.find_child("DefaultPolicy"),
            "CKV_AWS_108",
            "False positive: CDK writes the ReadDecision task's action as 's3:getObject', which checkov's "
            "cloudsplaining does not match case-insensitively, so it reads it as unconstrained; the statement "
            "allows only the artifacts bucket's runs/* objects.",
        )
        self.serving = ServingStack(
            self,
            "Serving",
            config=config,
            vpc=self.network.vpc,
            app_subnets=self.network.app_subnets,
            app_security_group=self.network.app_security_group,
            artifacts_bucket=self.storage.artifacts_bucket,
            experts_endpoint=experts_endpoint,
            models_read_policy=self.storage.prefix_access_policy(
                "ServingModelsRead",
                bucket=self.storage.artifacts_bucket,
                prefix=MODELS_PREFIX,
                actions=["s3:GetObject"],
                description="signal-engine serving: read model bundles (combiner and expert endpoints)",
            ),
            batch_jobs_policy=self.storage.prefix_access_policy(
                "ServingBatchJobs",
                bucket=self.storage.artifacts_bucket,
                prefix=JOBS_PREFIX,
                actions=["s3:GetObject", "s3:PutObject"],
                description="signal-engine serving: batch jobs' requests and answers (combiner and batch worker)",
            ),
            mysql_secret=self.storage.mysql_secret,
            docdb_secret=self.storage.docdb_secret,
            alarm_topic=self.monitoring.alarm_topic,
            environment_key=self.operations_key,
            description=f"signal-engine {config.name}: expert endpoints, combiner Lambda, Signal API",
            **common,
        )
        self.book = BookStack(
            self,
            "Book",
            config=config,
            vpc=self.network.vpc,
            app_subnets=self.network.app_subnets,
            app_security_group=self.network.app_security_group,
            model_bundle_uri=self.serving.model_bundle_uri,
            models_read_policy=self.storage.prefix_access_policy(
                "BookStepModelsRead",
                bucket=self.storage.artifacts_bucket,
                prefix=MODELS_PREFIX,
                actions=["s3:GetObject"],
                description="signal-engine book step: read the whole-book bundle (book.json, bundles, experts)",
            ),
            mysql_secret=self.storage.mysql_secret,
            docdb_secret=self.storage.docdb_secret,
            experts_endpoint=experts_endpoint,
            alarm_topic=self.monitoring.alarm_topic,
            environment_key=self.operations_key,
            bar_collectors=[self.collectors.functions[name] for name in BAR_COLLECTORS] if self.collectors else (),
            description=f"signal-engine {config.name}: live book step (container Lambda) after each bar collection",
            **common,
        )
