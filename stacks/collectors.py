"""Collectors stack: one Lambda per source and kind on an EventBridge schedule, with retries, a DLQ and alarms, and
the bars export that turns the stored bars into the training workflow's input (``bars/<timeframe>/<SYMBOL>.csv``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from signal_engine.storage.news_files import NEWS_PREFIX
from stacks.config import COLLECTORS, StageConfig
from stacks.constructs.lambda_role import acknowledge_tracing, grant_decrypt, grant_secret_read, lambda_vpc_role
from stacks.constructs.nag import acknowledge, skip_checkov
from stacks.constructs.ops_dashboard import OpsDashboard
from stacks.lambda_packages import asset_dir, ca_bundle_environment

RUNTIME = lambda_.Runtime.PYTHON_3_11
METRICS_NAMESPACE = "SignalEngine"
METRICS_SERVICE = "signal-engine-collectors"
RAW_PREFIX = "raw"
# The training workflow reads <dataset_prefix>/<SYMBOL>.csv, dataset_prefix "bars/1d" by default; the bars export
# (lambda_src/collectors/export_bars.py, signal_engine.storage.export.BARS_PREFIX) writes bars/<timeframe>/.
DATASETS_BARS_PREFIX = "bars"
# Beside them, the stored news of each symbol (signal_engine.storage.news_files.NEWS_PREFIX): news/<SYMBOL>.jsonl, the
# prepare job's news channel when the MoE's news slot is trained (moe.news).
DATASETS_NEWS_PREFIX = NEWS_PREFIX
EXPORT_BARS = "export_bars"
# Collectors whose success puts a "Lambda Function Invocation Result - Success" event on the default bus (their
# EventBridge on-success destination): the book step (stacks/book.py) runs after them.
BAR_COLLECTORS = ("yahoo_bars", "nasdaq_bars")
RUNTIME_REASON = (
    "Python 3.11 is the interpreter the project is developed and tested on (pyproject requires-python) and the "
    "packages of `make package-lambdas` are built for it; the runtime is supported by Lambda until 2027."
)


def pascal(name: str) -> str:
    """yahoo_bars -> YahooBars (construct ids)."""
    return "".join(part.capitalize() for part in name.split("_"))


class CollectorsStack(Stack):
    """The ten collector functions of lambda_src/collectors/, their schedules, idempotency table, DLQ and alarms.

    Beside them, the bars export function (``export_bars``, its own role: the MySQL and DocumentDB secrets,
    ``datasets_bars_policy`` and ``datasets_news_policy``, read and write on the datasets bucket's ``bars/`` and
    ``news/`` prefixes only) writes the stored bars to ``s3://<datasets bucket>/bars/<timeframe>/<SYMBOL>.csv`` and
    each symbol's stored news to ``news/<SYMBOL>.jsonl`` (``EXPORT_NEWS``) on ``config.bars_export_schedule``, after
    the daily bar collectors and before the weekly training run that reads them.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        vpc: ec2.IVpc,
        app_subnets: ec2.SubnetSelection,
        app_security_group: ec2.ISecurityGroup,
        raw_bucket: s3.IBucket,
        raw_payloads_policy: iam.IManagedPolicy,
        mysql_secret: secretsmanager.ISecret,
        docdb_secret: secretsmanager.ISecret,
        alarm_topic: sns.ITopic,
        environment_key: kms.IKey,
        datasets_bucket: s3.IBucket,
        datasets_bars_policy: iam.IManagedPolicy,
        datasets_news_policy: iam.IManagedPolicy,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self._config = config
        self._environment_key = environment_key

        self.idempotency_table = dynamodb.TableV2(
            self,
            "IdempotencyTable",
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="expiration",
            billing=dynamodb.Billing.on_demand(),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=config.log_removal_policy,
        )

        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            self.dead_letter_queue,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter queue of the collectors (failed invocations and undeliverable "
            "schedule events land here for inspection); a DLQ of a DLQ would only hide them.",
        )
        skip_checkov(
            self.dead_letter_queue,
            "CKV_AWS_27",
            "The queue is encrypted at rest with SQS-managed keys (SqsManagedSseEnabled); checkov 3's "
            "CloudFormation check only recognises KmsMasterKeyId. A KMS key would also need grants for EventBridge.",
        )

        self.role = self._build_role(raw_payloads_policy, mysql_secret, docdb_secret)
        package = asset_dir(self, "collectors")
        # The CA bundle's path only when the package carries it (else a synthesis warning names the fix).
        ca_files = ca_bundle_environment(
            self, package, ["SIGNAL_ENGINE_DATABASE_CA_FILE", "SIGNAL_ENGINE_DOCUMENT_CA_FILE"]
        )
        code = lambda_.Code.from_asset(package)
        environment = {
            "SYMBOLS": ",".join(config.symbols),
            "WINDOW_DAYS": "5",
            "TIMEFRAME": "1d",
            "IDEMPOTENCY_TABLE": self.idempotency_table.table_name,
            "IDEMPOTENCY_TTL_SECONDS": str(6 * 3600),
            "SIGNAL_ENGINE_DATABASE_SECRET": mysql_secret.secret_arn,
            "SIGNAL_ENGINE_DOCUMENT_SECRET": docdb_secret.secret_arn,
            **ca_files,
            "SIGNAL_ENGINE_OBJECT_STORE": raw_bucket.s3_url_for_object(RAW_PREFIX),
            "POWERTOOLS_SERVICE_NAME": METRICS_SERVICE,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        }
        self.functions: dict[str, lambda_.Function] = {}
        self.rules: dict[str, events.Rule] = {}
        for name in COLLECTORS:
            function = self._build_function(name, code, environment, vpc, app_subnets, app_security_group)
            self.functions[name] = function
            self.rules[name] = self._schedule(
                name, function, config.collector_schedules[name], f"Collect {name.replace('_', ' ')}"
            )

        self.export_role = self._build_export_role(
            [datasets_bars_policy, datasets_news_policy], mysql_secret, docdb_secret
        )
        export_environment = {
            "SYMBOLS": ",".join(config.symbols),
            "TIMEFRAME": "1d",
            "EXPORT_NEWS": "true",
            "SIGNAL_ENGINE_DATABASE_SECRET": mysql_secret.secret_arn,
            "SIGNAL_ENGINE_DOCUMENT_SECRET": docdb_secret.secret_arn,
            "SIGNAL_ENGINE_DATASETS_STORE": f"s3://{datasets_bucket.bucket_name}",
            **ca_files,
            "POWERTOOLS_SERVICE_NAME": METRICS_SERVICE,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        }
        self.export_function = self._build_function(
            EXPORT_BARS, code, export_environment, vpc, app_subnets, app_security_group,
            role=self.export_role,
            description=f"signal-engine bars export: stored bars and news to s3://<datasets>/{DATASETS_BARS_PREFIX}/ "
            f"and {DATASETS_NEWS_PREFIX}/ (the training input)",
        )
        self.export_rule = self._schedule(
            EXPORT_BARS, self.export_function, config.bars_export_schedule,
            f"Export the stored bars and news as the training input ({DATASETS_BARS_PREFIX}/1d/<SYMBOL>.csv, "
            f"{DATASETS_NEWS_PREFIX}/<SYMBOL>.jsonl)",
        )

        self.dashboard = OpsDashboard(
            self, "Dashboard", alarm_topic=alarm_topic, dashboard_name=f"{config.construct_id}-Collectors"
        )
        self._add_monitoring()

    def _schedule(self, name: str, function: lambda_.Function, expression: str, what: str) -> events.Rule:
        """An EventBridge rule invoking ``function`` on ``expression``; undeliverable events go to the DLQ."""
        return events.Rule(
            self,
            f"{pascal(name)}Schedule",
            description=f"{what} ({expression} UTC)",
            schedule=events.Schedule.expression(expression),
            targets=[
                targets.LambdaFunction(
                    function,
                    dead_letter_queue=self.dead_letter_queue,
                    retry_attempts=2,
                    max_event_age=Duration.hours(1),
                )
            ],
        )

    def _build_export_role(
        self,
        datasets_policies: Sequence[iam.IManagedPolicy],
        mysql_secret: secretsmanager.ISecret,
        docdb_secret: secretsmanager.ISecret,
    ) -> iam.Role:
        """The bars export's role: read the bars (MySQL secret) and the news (DocumentDB secret), write the datasets
        bucket's bars/ and news/ prefixes, DLQ."""
        role = lambda_vpc_role(
            self,
            "ExportRole",
            description="signal-engine bars export: MySQL and DocumentDB via their secrets, training input files to "
            "the datasets bucket",
        )
        for policy in datasets_policies:
            role.add_managed_policy(policy)
        grant_secret_read(role, "StoreSecret", mysql_secret, docdb_secret)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="DeadLetters", actions=["sqs:SendMessage"], resources=[self.dead_letter_queue.queue_arn]
            )
        )
        grant_decrypt(role, environment_key=self._environment_key, secrets=[mysql_secret, docdb_secret])
        acknowledge_tracing(role)
        return role

    def _build_role(
        self,
        raw_payloads_policy: iam.IManagedPolicy,
        mysql_secret: secretsmanager.ISecret,
        docdb_secret: secretsmanager.ISecret,
    ) -> iam.Role:
        """One role for the collectors: raw payloads in, database secrets, idempotency table, DLQ."""
        role = lambda_vpc_role(
            self,
            "FunctionRole",
            description="signal-engine collectors: raw payloads to S3, stores via secrets, idempotency records",
        )
        role.add_managed_policy(raw_payloads_policy)
        grant_secret_read(role, "StoreSecrets", mysql_secret, docdb_secret)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="IdempotencyRecords",
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                resources=[self.idempotency_table.table_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="DeadLetters", actions=["sqs:SendMessage"], resources=[self.dead_letter_queue.queue_arn]
            )
        )
        grant_decrypt(role, environment_key=self._environment_key, secrets=[mysql_secret, docdb_secret])
        acknowledge_tracing(role)
        return role

    def _build_function(
        self,
        name: str,
        code: lambda_.Code,
        environment: dict[str, str],
        vpc: ec2.IVpc,
        app_subnets: ec2.SubnetSelection,
        app_security_group: ec2.ISecurityGroup,
        *,
        role: iam.IRole | None = None,
        description: str | None = None,
    ) -> lambda_.Function:
        config = self._config
        construct_id = pascal(name)
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=config.log_retention,
            removal_policy=config.log_removal_policy,
        )
        function = lambda_.Function(
            self,
            construct_id,
            description=description or f"signal-engine collector: {name.replace('_', ' ')}",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=f"collectors.{name}.handler",
            code=code,
            memory_size=config.collector_memory_mb,
            timeout=Duration.seconds(config.collector_timeout_seconds),
            environment=environment,
            environment_encryption=self._environment_key,
            role=role or self.role,
            vpc=vpc,
            vpc_subnets=app_subnets,
            security_groups=[app_security_group],
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            reserved_concurrent_executions=config.collector_reserved_concurrency or None,
            retry_attempts=config.collector_retry_attempts,
            max_event_age=Duration.hours(1),
            dead_letter_queue=self.dead_letter_queue,
            on_success=destinations.EventBridgeDestination() if name in BAR_COLLECTORS else None,
        )
        acknowledge(function, "AwsSolutions-L1", RUNTIME_REASON)
        if not config.collector_reserved_concurrency:
            skip_checkov(function, "CKV_AWS_115", f"The {config.name} stage reserves no concurrency "
                         "(collector_reserved_concurrency 0): reserving needs a raised Lambda concurrency quota on "
                         "new accounts (README, Deploying to AWS); each schedule starts one run at a time.")
        return function

    def _add_monitoring(self) -> None:
        """Collector runs, errors, throttles, rows written and the DLQ, with alarms to the topic."""
        ops = self.dashboard
        five = Duration.minutes(5)
        # An alarm's math expression takes at most 10 metrics: the ten collectors; the bars export has its own.
        errors = cloudwatch.MathExpression(
            expression="SUM(METRICS())",
            using_metrics={f"e{i}": f.metric_errors(period=five) for i, f in enumerate(self.functions.values())},
            label="Errors, all collectors",
            period=five,
        )
        throttles = cloudwatch.MathExpression(
            expression="SUM(METRICS())",
            using_metrics={f"t{i}": f.metric_throttles(period=five) for i, f in enumerate(self.functions.values())},
            label="Throttles, all collectors",
            period=five,
        )
        export_errors = self.export_function.metric_errors(period=five, label="Errors, bars export")
        dlq_depth = self.dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=five, statistic="Maximum"
        )
        errors_alarm = ops.add_event_alarm(
            "ErrorsAlarm",
            metric=errors,
            description="A collector failed (after Lambda's retries the event goes to the DLQ)",
        )
        throttles_alarm = ops.add_event_alarm(
            "ThrottlesAlarm",
            metric=throttles,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            description="Collectors throttled: runs overlap beyond the reserved concurrency",
        )
        dlq_alarm = ops.add_event_alarm(
            "DeadLetterAlarm",
            metric=dlq_depth,
            description="Collector events in the dead-letter queue: inspect and redrive them",
        )

        def collector_metric(name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map={"service": METRICS_SERVICE},
                statistic="Sum",
                period=Duration.hours(1),
                label=name,
            )

        export_errors_alarm = ops.add_event_alarm(
            "ExportErrorsAlarm",
            metric=export_errors,
            description="The bars export failed (no symbol exported, or the store or bucket unreachable): the "
            "training input is stale; after Lambda's retries the event goes to the DLQ",
        )
        missing_alarm = ops.add_event_alarm(
            "ExportMissingAlarm",
            metric=collector_metric("SymbolsMissing"),
            description="The bars export found no usable stored bars for a symbol (its previous training input file "
            "is kept; a symbol never exported fails the training run): check that symbol's bar collectors",
        )
        disagreements_alarm = ops.add_event_alarm(
            "SourceDisagreementAlarm",
            metric=collector_metric("BarDisagreements"),
            description="A bar from the cross-check source disagrees with the primary source's beyond the tolerance "
            "(recorded in the bar_disagreements table, never merged): check a split, a dividend or a bad print",
        )

        ops.add_section(
            "Collector runs",
            ops.graph(
                "Invocations per collector",
                [f.metric_invocations(period=Duration.hours(1), label=n) for n, f in self.functions.items()],
                width=12,
            ),
            ops.graph(
                "Requests, payloads, rows",
                [collector_metric(m) for m in ("CollectionRequests", "PayloadsKept", "RowsWritten")],
                width=12,
            ),
            ops.graph("Bars the sources disagree on", [collector_metric("BarDisagreements")],
                      thresholds=[disagreements_alarm], width=12),
        )
        ops.add_section(
            "Bars export (training input)",
            ops.graph(
                "Symbols exported and missing",
                [collector_metric(m) for m in ("SymbolsExported", "SymbolsMissing", "SymbolsKept")],
                thresholds=[missing_alarm],
                width=12,
            ),
            ops.graph(
                "Export runs and errors",
                [self.export_function.metric_invocations(period=five, label="Invocations"), export_errors],
                thresholds=[export_errors_alarm],
                width=12,
            ),
        )
        ops.add_section(
            "Failures",
            ops.graph("Errors", [errors], thresholds=[errors_alarm]),
            ops.graph("Throttles", [throttles], thresholds=[throttles_alarm]),
            ops.graph("Dead-letter queue depth", [dlq_depth], thresholds=[dlq_alarm]),
            ops.graph(
                "Failed collections and invalid events",
                [collector_metric(m) for m in ("CollectionFailures", "InvalidEvents")],
                width=12,
            ),
            ops.graph(
                "Duration p90 (ms)",
                [f.metric_duration(period=Duration.hours(1), statistic="p90", label=n) for n, f in
                 self.functions.items()],
                width=12,
            ),
        )
        ops.add_alarm_status()
