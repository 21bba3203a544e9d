"""Book stack: the live book's step as a container-image Lambda run after each bar collection, with its DLQ, alarms
and dashboard.

The step (lambda_src/book_step/) runs the experts in process (pandas, scikit-learn, LightGBM, arch), more than a
zip package may hold (250 MB unzipped), so the function is a container image built from
containers/book_step/Dockerfile on AWS's Lambda base image. ``cdk synth`` only fingerprints and stages the build
context into cdk.out; ``cdk deploy`` builds and pushes the image (the one step that needs Docker).

Trigger: the bar collectors (``BAR_COLLECTORS``) have an EventBridge on-success destination (the default bus), so
each successful collection puts a "Lambda Function Invocation Result - Success" event (``source: lambda``) there;
a rule matches those of the bar collectors and invokes the step asynchronously (two retries, then the DLQ). A
second rule takes "Step Book" requests (``source: signal-engine.book``) for a backfill or a manual run.

News: a bundle whose gate has the news slot reads each symbol's headlines from DocumentDB (its secret,
``SIGNAL_ENGINE_DOCUMENT_SECRET``; the app security group reaches the cluster) and asks the text expert on the
experts' SageMaker endpoint (``EXPERT_ENDPOINTS``' ``news``: the image has no text encoder), as the combiner does; the
role may invoke that endpoint only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aws_cdk import Duration, IgnoreMode, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from signal_engine.serving.bundle import NEWS_EXPERT
from stacks.config import StageConfig
from stacks.constructs.lambda_role import acknowledge_tracing, grant_decrypt, grant_secret_read, lambda_vpc_role
from stacks.constructs.nag import acknowledge, skip_checkov
from stacks.constructs.ops_dashboard import OpsDashboard

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = "containers/book_step/Dockerfile"
HANDLER = "book_step.handler.handler"
# What the image copies (containers/book_step/Dockerfile); .dockerignore keeps the same set in `docker build`.
BUILD_CONTEXT = ("signal_engine", "lambda_src/book_step", "lambda_src/backtest_fanout", "containers/constraints.txt",
                 "containers/book_step", "pyproject.toml", "README.md")
EXCLUDE = ["*", "!lambda_src", "lambda_src/*", *(f"!{path}" for path in BUILD_CONTEXT), "**/__pycache__", "**/*.pyc"]
CA_FILE = "/var/task/certs/rds-global-bundle.pem"
# The same image runs the backtest fan-out's functions (step_functions/backtest_fanout.py) with other commands.
IMAGE_NAME = "signal-engine Lambda image"
METRICS_NAMESPACE = "SignalEngine"
METRICS_SERVICE = "signal-engine-book"
STEP_REQUEST_SOURCE = "signal-engine.book"
STEP_REQUEST_DETAIL_TYPE = "Step Book"
DESTINATION_SOURCE = "lambda"
DESTINATION_SUCCESS = "Lambda Function Invocation Result - Success"


class BookStack(Stack):
    """The book step function, its triggers, DLQ, alarms and the ``<stage>-Book`` dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        vpc: ec2.IVpc,
        app_subnets: ec2.SubnetSelection,
        app_security_group: ec2.ISecurityGroup,
        model_bundle_uri: str,
        models_read_policy: iam.IManagedPolicy,
        mysql_secret: secretsmanager.ISecret,
        alarm_topic: sns.ITopic,
        environment_key: kms.IKey,
        bar_collectors: Sequence[lambda_.IFunction] = (),
        experts_endpoint: str | None = None,
        docdb_secret: secretsmanager.ISecret | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self._config = config
        self._experts_endpoint = experts_endpoint
        self._docdb_secret = docdb_secret
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
            "This queue is itself the dead-letter queue of the book step (failed steps and undeliverable trigger "
            "events land here for inspection and redrive); a DLQ of a DLQ would only hide them.",
        )
        skip_checkov(
            self.dead_letter_queue,
            "CKV_AWS_27",
            "The queue is encrypted at rest with SQS-managed keys (SqsManagedSseEnabled); checkov 3's "
            "CloudFormation check only recognises KmsMasterKeyId. A KMS key would also need grants for EventBridge.",
        )
        self.role = self._build_role(models_read_policy, mysql_secret, environment_key)
        log_group = logs.LogGroup(
            self, "BookStepLogs", retention=config.log_retention, removal_policy=config.log_removal_policy
        )
        self.function = lambda_.DockerImageFunction(
            self,
            "BookStep",
            description="signal-engine book step: the live books over the newly stored bars (after collection)",
            code=lambda_.DockerImageCode.from_image_asset(
                str(ROOT),
                file=DOCKERFILE,
                cmd=[HANDLER],
                platform=ecr_assets.Platform.LINUX_AMD64,
                exclude=EXCLUDE,
                ignore_mode=IgnoreMode.DOCKER,
                display_name=IMAGE_NAME,
            ),
            architecture=lambda_.Architecture.X86_64,
            memory_size=config.book_step_memory_mb,
            timeout=Duration.seconds(config.book_step_timeout_seconds),
            environment={
                "MODEL_BUNDLE_URI": model_bundle_uri,
                "SIGNAL_ENGINE_DATABASE_SECRET": mysql_secret.secret_arn,
                "SIGNAL_ENGINE_DATABASE_CA_FILE": CA_FILE,
                **self._news_environment(),
                "POWERTOOLS_SERVICE_NAME": METRICS_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            environment_encryption=environment_key,
            role=self.role,
            vpc=vpc,
            vpc_subnets=app_subnets,
            security_groups=[app_security_group],
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            retry_attempts=2,
            max_event_age=Duration.hours(6),
            dead_letter_queue=self.dead_letter_queue,
        )
        skip_checkov(self.function, "CKV_AWS_115", "The book step runs after each bar collection and a step "
                     "that races another fails without writing (the book store checks the previous bar, "
                     "BookConflictError) and is retried; reserving concurrency needs a raised Lambda quota on new "
                     "accounts (README, Deploying to AWS).")
        self.rules = self._triggers(bar_collectors)
        self.dashboard = OpsDashboard(
            self, "Dashboard", alarm_topic=alarm_topic, dashboard_name=f"{config.construct_id}-Book"
        )
        self._add_monitoring()

    def _news_environment(self) -> dict[str, str]:
        """The text expert's endpoint and the document store (DocumentDB, over TLS with the image's RDS CA bundle,
        which holds DocumentDB's CAs too), where the stage has them."""
        environment = {}
        if self._experts_endpoint is not None:
            environment["EXPERT_ENDPOINTS"] = json.dumps({NEWS_EXPERT: self._experts_endpoint})
        if self._docdb_secret is not None:
            environment["SIGNAL_ENGINE_DOCUMENT_SECRET"] = self._docdb_secret.secret_arn
            environment["SIGNAL_ENGINE_DOCUMENT_CA_FILE"] = CA_FILE
        return environment

    def _build_role(self, models_read_policy: iam.IManagedPolicy, mysql_secret: secretsmanager.ISecret,
                    environment_key: kms.IKey) -> iam.Role:
        """Read the models/ prefix, the MySQL secret (the books, the bars), the DocumentDB secret (the headlines),
        the DLQ; invoke the experts' endpoint (the text expert); nothing else."""
        role = lambda_vpc_role(
            self, "BookStepRole",
            description="signal-engine book step: whole-book bundle from models/, books and bars in MySQL",
        )
        role.add_managed_policy(models_read_policy)
        grant_secret_read(role, "StoreSecret", mysql_secret)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="DeadLetters", actions=["sqs:SendMessage"], resources=[self.dead_letter_queue.queue_arn]
            )
        )
        secrets = [mysql_secret]
        if self._docdb_secret is not None:
            grant_secret_read(role, "NewsStoreSecret", self._docdb_secret)
            secrets.append(self._docdb_secret)
        if self._experts_endpoint is not None:
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="InvokeTextExpert",
                    actions=["sagemaker:InvokeEndpoint"],
                    resources=[self.format_arn(service="sagemaker", resource="endpoint",
                                               resource_name=self._experts_endpoint.lower())],
                )
            )
        grant_decrypt(role, environment_key=environment_key, secrets=secrets)
        acknowledge_tracing(role)
        return role

    def _target(self) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            self.function, dead_letter_queue=self.dead_letter_queue, retry_attempts=2, max_event_age=Duration.hours(6)
        )

    def _triggers(self, bar_collectors: Sequence[lambda_.IFunction]) -> list[events.Rule]:
        """After each successful bar collection; and on a "Step Book" request."""
        rules = []
        if bar_collectors:
            rules.append(events.Rule(
                self,
                "AfterCollection",
                description="Step the live books after a bar collector succeeded (its on-success destination)",
                event_pattern=events.EventPattern(
                    source=[DESTINATION_SOURCE],
                    detail_type=[DESTINATION_SUCCESS],
                    # requestContext.functionArn is qualified (…:function:NAME:$LATEST): match the name's prefix.
                    detail={"requestContext": {"functionArn": events.Match.any_of(
                        *(events.Match.prefix(f"{function.function_arn}:") for function in bar_collectors))}},
                ),
                targets=[self._target()],
            ))
        rules.append(events.Rule(
            self,
            "StepRequest",
            description=f"Step the live books on request (PutEvents source {STEP_REQUEST_SOURCE}, detail-type "
            f"'{STEP_REQUEST_DETAIL_TYPE}', detail {{books?, until?}})",
            event_pattern=events.EventPattern(source=[STEP_REQUEST_SOURCE], detail_type=[STEP_REQUEST_DETAIL_TYPE]),
            targets=[self._target()],
        ))
        return rules

    def _add_monitoring(self) -> None:
        """Steps, bars stepped, duration, errors, the DLQ and waiting symbols, with alarms to the topic."""
        ops = self.dashboard
        config = self._config
        five = Duration.minutes(5)
        hour = Duration.hours(1)

        def book_metric(name: str, *, statistic: str = "Sum", period: Duration = hour) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=name,
                                     dimensions_map={"service": METRICS_SERVICE}, statistic=statistic,
                                     period=period)

        errors = self.function.metric_errors(period=five)
        dlq_depth = self.dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=five, statistic="Maximum")
        errors_alarm = ops.add_event_alarm(
            "StepErrorsAlarm",
            metric=errors,
            description="The book step failed (bundle, database or step error, named in its log); Lambda retries it "
            "twice, then the event goes to the DLQ. The stored books are as before the failed step",
        )
        dlq_alarm = ops.add_event_alarm(
            "DeadLetterAlarm",
            metric=dlq_depth,
            description="Book step events in the dead-letter queue: fix the cause, then redrive them (or put a "
            f"'{STEP_REQUEST_DETAIL_TYPE}' event)",
        )
        hours = config.book_step_missed_after_hours
        missed_alarm = ops.add_alarm(
            "MissedStepAlarm",
            metric=book_metric("BooksStepped"),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=hours,
            datapoints_to_alarm=hours,
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            description=f"No book step succeeded for {hours} hours (book_step_missed_after_hours): the bar "
            "collectors failed, their success events did not reach the step, or every step failed",
        )
        days = config.book_waiting_alarm_days
        waiting_alarm = ops.add_alarm(
            "SymbolWaitingAlarm",
            metric=book_metric("SymbolsWaiting", statistic="Minimum", period=Duration.days(1)),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=days,
            datapoints_to_alarm=days,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            description=f"Every book step of {days} consecutive day(s) (book_waiting_alarm_days) waited for a "
            "symbol whose latest stored bar lags the others, so the book did not advance: check that symbol's bar "
            "collectors (the step's log names it)",
        )
        ops.add_section(
            "Book step",
            ops.graph("Books and bars stepped",
                      [book_metric("BooksStepped"), book_metric("BarsStepped"), book_metric("BarsReplayed")],
                      thresholds=[missed_alarm], width=12),
            ops.graph("Symbols waiting and ended",
                      [book_metric("SymbolsWaiting", statistic="Maximum"), book_metric("SymbolsEnded",
                                                                                       statistic="Maximum")],
                      thresholds=[waiting_alarm], width=12),
            ops.graph("Errors and failed steps", [errors, book_metric("StepFailures", period=five)],
                      thresholds=[errors_alarm]),
            ops.graph("Duration (ms)", [self.function.metric_duration(period=hour, statistic="Maximum",
                                                                      label="Maximum"),
                                        self.function.metric_duration(period=hour, statistic="p50",
                                                                      label="p50")]),
            ops.graph("Dead-letter queue depth", [dlq_depth], thresholds=[dlq_alarm]),
        )
        ops.add_alarm_status()
