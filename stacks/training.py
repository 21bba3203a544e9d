"""Training stack: the training and inference images, the Step Functions workflow, its schedule and dashboard, and
the backtest fan-out (a Distributed Map over batches of symbols, step_functions/backtest_fanout.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.container_image import container_image
from stacks.constructs.nag import acknowledge
from stacks.constructs.ops_dashboard import OpsDashboard
from step_functions.backtest_fanout import BACKTESTS_PREFIX, BacktestFanOut
from step_functions.training_workflow import ServerlessEndpoint, TrainingWorkflow

DATASET_PREFIX = "bars/1d"
# The output CDK publishes from the Storage stack for the artifacts bucket's ARN (see _acknowledge_state_machine_role).
ARTIFACTS_ARN_OUTPUT = "PublishOutputFnGetAttArtifactsBucket2AAC5544ArnE18AB387"
MODELS_PREFIX = "models"


class TrainingStack(Stack):
    """Images from containers/, the TrainingWorkflow construct, a weekly schedule, a dashboard and alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        vpc: ec2.IVpc,
        app_subnets: ec2.SubnetSelection,
        app_security_group: ec2.ISecurityGroup,
        datasets_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        sagemaker_role: iam.IRole,
        experts_endpoint: str,
        alarm_topic: sns.ITopic,
        backtest_policies: Sequence[iam.IManagedPolicy] = (),
        environment_key: kms.IKey | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.training_image = container_image(self, "TrainingImage", "training")
        self.cpu_training_image = container_image(self, "CpuTrainingImage", "training-cpu")
        self.inference_image = container_image(self, "InferenceImage", "inference")
        self.workflow = TrainingWorkflow(
            self,
            "Workflow",
            datasets_bucket=datasets_bucket,
            artifacts_bucket=artifacts_bucket,
            training_image=self.training_image,
            cpu_training_image=self.cpu_training_image,
            inference_image=self.inference_image,
            sagemaker_role=sagemaker_role,
            alarm_topic=alarm_topic,
            vpc=vpc,
            subnets=app_subnets,
            security_groups=[app_security_group],
            training_instance_type=config.training_instance_type,
            processing_instance_type=config.processing_instance_type,
            endpoint_instance_type=config.expert_instance_type,
            endpoint_serverless=(
                ServerlessEndpoint(config.expert_serverless_memory_mb, config.expert_serverless_max_concurrency)
                if config.expert_endpoint_mode == "serverless"
                else None
            ),
            endpoint_name=experts_endpoint,
            profile=config.training_profile,
            dataset_prefix=DATASET_PREFIX,
            models_prefix=MODELS_PREFIX,
            max_runtime=Duration.hours(config.training_max_runtime_hours),
            log_retention=config.log_retention,
            removal_policy=config.log_removal_policy,
        )
        self.state_machine: sfn.StateMachine = self.workflow.state_machine
        self.backtests = BacktestFanOut(
            self,
            "Backtests",
            datasets_bucket=datasets_bucket,
            artifacts_bucket=artifacts_bucket,
            alarm_topic=alarm_topic,
            processing_image=self.workflow.cpu_training_image_uri,
            sagemaker_role=sagemaker_role,
            data_policies=backtest_policies,
            environment_key=environment_key,
            vpc=vpc,
            subnets=app_subnets,
            security_groups=[app_security_group],
            dataset_prefix=DATASET_PREFIX,
            processing_instance_type=config.processing_instance_type,
            log_retention=config.log_retention,
            removal_policy=config.log_removal_policy,
        )
        self._acknowledge_state_machine_role(artifacts_bucket)

        self.schedule = events.Rule(
            self,
            "Schedule",
            description=f"Retrain the experts ({config.train_schedule} UTC) on {config.collector_symbols}",
            schedule=events.Schedule.expression(config.train_schedule),
            targets=[
                targets.SfnStateMachine(
                    self.state_machine,
                    input=events.RuleTargetInput.from_object({"symbols": list(config.symbols)}),
                    retry_attempts=2,
                    max_event_age=Duration.hours(2),
                )
            ],
        )

        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn,
                  description="Start a training run: Step Functions console, or aws stepfunctions start-execution")
        CfnOutput(self, "BacktestStateMachineArn", value=self.backtests.state_machine.state_machine_arn,
                  description="Backtest many symbols fanned out: start-execution with {\"symbols\": [...]}; "
                  "the result lands in s3://<artifacts bucket>/backtests/<execution name>/result/")
        CfnOutput(self, "DatasetsBucketName", value=datasets_bucket.bucket_name,
                  description=f"Training input: s3://<this bucket>/{DATASET_PREFIX}/<SYMBOL>.csv (Yahoo layout)")
        self.dashboard = OpsDashboard(
            self, "Dashboard", alarm_topic=alarm_topic, dashboard_name=f"{config.construct_id}-Training"
        )
        self._add_monitoring()

    def _acknowledge_state_machine_role(self, artifacts_bucket: s3.IBucket) -> None:
        """The one wildcard of the state machine role that TrainingWorkflow cannot name from inside its stack.

        TrainingWorkflow acknowledges its scoped wildcards itself, naming the artifacts bucket as a local GetAtt;
        here the bucket lives in the Storage stack, so cdk-nag sees the (weak) cross-stack output instead, which
        CDK names after the bucket's logical id.
        """
        policy = self.state_machine.role.node.find_child("DefaultPolicy")
        stack_name = Stack.of(artifacts_bucket).stack_name
        output = {"StackName": stack_name, "Region": {"Ref": "AWS::Region"}, "OutputName": ARTIFACTS_ARN_OUTPUT}
        acknowledge(
            self.backtests.state_machine.role.node.find_child("DefaultPolicy"),
            f"AwsSolutions-IAM5[Resource::{json.dumps({'Fn::GetStackOutput': output}, separators=(',', ':'))}"
            f"/{BACKTESTS_PREFIX}/*]",
            "The fan-out's RunBatches reads backtests/<execution>/batches.json (its Distributed Map's items); the "
            "execution name is known only at run time, so it may read the objects under backtests/ only.",
        )
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{json.dumps({'Fn::GetStackOutput': output}, separators=(',', ':'))}"
            "/runs/*]",
            "ReadDecision reads runs/<execution>/evaluation.json; the execution name is known only at run time, "
            "so the state machine may read the objects under runs/ and nothing else of the bucket.",
        )

    def _add_monitoring(self) -> None:
        """Training runs: started, succeeded, failed, timed out; run time; alarms on failures and timeouts."""
        ops = self.dashboard
        machine = self.state_machine
        day = Duration.days(1)
        failed = machine.metric_failed(period=day, statistic="Sum")
        timed_out = machine.metric_timed_out(period=day, statistic="Sum")
        failed_alarm = ops.add_event_alarm(
            "RunFailedAlarm",
            metric=failed,
            description="A training run failed (its cause was also published to the alarm topic)",
        )
        timeout_alarm = ops.add_event_alarm(
            "RunTimedOutAlarm",
            metric=timed_out,
            description="A training run hit the state machine's timeout",
        )
        ops.add_section(
            "Training runs",
            ops.graph(
                "Runs per day",
                [
                    machine.metric_started(period=day, statistic="Sum"),
                    machine.metric_succeeded(period=day, statistic="Sum"),
                ],
            ),
            ops.graph("Failed and timed out", [failed, timed_out], thresholds=[failed_alarm, timeout_alarm]),
            ops.graph("Run time (ms)", [machine.metric_time(period=day, statistic="Maximum")]),
        )
        ops.add_section(
            "SageMaker training jobs",
            *(ops.graph(f"{unit} utilisation (%)", [_training_jobs_host_metric(unit)], width=12)
              for unit in ("GPU", "CPU")),
        )
        ops.add_alarm_status()


def _training_jobs_host_metric(unit: str) -> cloudwatch.MathExpression:
    """The busiest training host's ``GPUUtilization`` or ``CPUUtilization`` (SEARCH over every job), per 5 min."""
    return cloudwatch.MathExpression(
        expression=f"SEARCH('{{/aws/sagemaker/TrainingJobs,Host}} MetricName=\"{unit}Utilization\"', 'Maximum', 300)",
        label=unit,
        period=Duration.minutes(5),
    )


def acknowledge_workflow_grants(role: iam.Role) -> None:
    """Acknowledge the KMS wildcards of the bucket grants TrainingWorkflow gives the SageMaker role.

    TrainingWorkflow acknowledges its S3 grants itself; the buckets here are encrypted with the stage's data key,
    so aws-cdk-lib's grant_read_write adds the key's encrypt/decrypt action groups as well.
    """
    policy = role.node.find_child("DefaultPolicy")
    for action, why in (
        ("kms:GenerateDataKey*", "encrypts the artefacts it writes with the stage's data key"),
        ("kms:ReEncrypt*", "is part of aws-cdk-lib's encrypt/decrypt grant on the stage's data key"),
    ):
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Action::{action}]",
            f"Granted by TrainingWorkflow through aws-cdk-lib bucket grants, on the stage's data key only: the "
            f"SageMaker role {why}.",
        )
