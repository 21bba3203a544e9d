"""A backtest over many symbols fanned out on Step Functions: a Distributed Map over batches of symbols.

::

    Plan                  Lambda (backtest_fanout.handler.plan): copies each symbol's s3://DATASETS/bars/1d/<SYMBOL>.csv
                          into backtests/<execution>/inputs/, checks the series and config as a local run does,
                          writes backtests/<execution>/batches.json (one item per batch, each with its runner)
    RunBatches            Distributed Map, ItemReader over batches.json; per batch:
      BatchRunner         Choice on the item's runner (the plan's estimate: Lambda under its budget, else Processing)
      BatchOnLambda       Lambda (handler.batch)        } retried (twice, backing off) on any error but bad input;
      BatchOnProcessing   createProcessingJob.sync      } after the retries -> BatchFailed {batch, error, cause}
    CheckBatches          Lambda (handler.check): any failed batch -> BatchesFailed, naming each with its cause
    MergeRunner           Choice on the plan's merge runner
      MergeOnLambda | MergeOnProcessing  -> backtests/<execution>/result/ (signals, metrics.json, report, ...)
    Merged                Succeed, with where the result is and the books' headline numbers

Every failure (the plan's input errors, failed batches, the merge) goes to ``NotifyBacktestFailure`` (SNS, with the
error and its cause) -> ``BacktestFailed``; no batch is dropped silently: the merge refuses a run missing a batch.

Execution input: ``{"symbols": [...], "profile"?: "quick"|"full", "config"?: {config overrides, as a local run's
--config file}, "batch_symbols"?: symbols per batch (10), "runner"?: "auto"|"lambda"|"processing"}``
(``signal_engine.fanout_run.FanOutRequest``). The merged files equal those of ``signal-engine backtest`` on the
same price files in the same order with the same profile and config.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnElement, Duration, IgnoreMode, RemovalPolicy, Size, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from signal_engine.fanout_run import JOB_PREFIX as PROCESSING_JOB_PREFIX
from stacks.constructs.lambda_role import acknowledge_tracing, grant_decrypt, lambda_vpc_role
from stacks.constructs.nag import acknowledge, nag_text, skip_checkov
from step_functions.training_workflow import (
    BACKTESTS_PREFIX,
    grant_keys_via,
    grant_sync_jobs,
    notify_then_fail,
    vpc_config,
)

SYNC_PROCESSING = "arn:aws:states:::sagemaker:createProcessingJob.sync"
PROCESSING_ROOT = "/opt/ml/processing"
ENTRY = ["python3", "/opt/ml/code/backtest_fanout.py"]
HANDLERS = {"plan": "backtest_fanout.handler.plan", "batch": "backtest_fanout.handler.batch",
            "check": "backtest_fanout.handler.check", "merge": "backtest_fanout.handler.merge"}
# What a retry repeats unchanged: bad input (the config, the prices, the batches of another run).
INPUT_ERRORS = ("FanOutError", "ConfigError", "InputError", "BatchError")
LAMBDA_SERVICE_ERRORS = ("Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                         "Lambda.TooManyRequestsException")
SAGEMAKER_THROTTLING = ("ThrottlingException", "SageMaker.ThrottlingException",
                        "SageMaker.ResourceLimitExceededException")


class BacktestFanOut(Construct):
    """The fan-out state machine, its four Lambda functions (one container image) and their grants.

    ``data_policies`` give the functions their data: read the datasets bucket's ``dataset_prefix``, read and
    write the artifacts bucket's ``backtests/`` (the Storage stack's prefix policies, beside the buckets).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        datasets_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        alarm_topic: sns.ITopic,
        processing_image: str,
        sagemaker_role: iam.IRole,
        data_policies: Sequence[iam.IManagedPolicy],
        environment_key: kms.IKey | None = None,
        vpc: ec2.IVpc | None = None,
        subnets: ec2.SubnetSelection | None = None,
        security_groups: Sequence[ec2.ISecurityGroup] = (),
        dataset_prefix: str = "bars/1d",
        processing_instance_type: str = "ml.m5.xlarge",
        batch_memory_mb: int = 3008,
        max_concurrency: int = 50,
        retry_interval: Duration | None = None,
        processing_max_runtime: Duration | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
    ) -> None:
        super().__init__(scope, construct_id)
        self.artifacts_bucket, self.sagemaker_role, self._alarm_topic = artifacts_bucket, sagemaker_role, alarm_topic
        self._image, self._instance = processing_image, processing_instance_type
        self._max_runtime = processing_max_runtime or Duration.hours(8)
        self._retry_interval = retry_interval or Duration.seconds(30)
        self._vpc_config = vpc_config(vpc, subnets, security_groups)
        self.role = lambda_vpc_role(self, "FunctionRole",
                                    description="signal-engine backtest fan-out: read the bars, keep the run")
        for policy in data_policies:
            self.role.add_managed_policy(policy)
        environment = {"DATASETS_STORE": f"s3://{datasets_bucket.bucket_name}/{dataset_prefix.strip('/')}",
                       "BACKTESTS_STORE": f"s3://{artifacts_bucket.bucket_name}/{BACKTESTS_PREFIX}",
                       "POWERTOOLS_SERVICE_NAME": "signal-engine-backtest"}
        # (memory MB, timeout s, /tmp GiB): a batch holds the run's inputs and its symbols' results (about 1 MB a
        # symbol per 2,000 bars and timeframe model), the merge every batch's and the merged files.
        sizes = {"plan": (2048, 300, 1), "batch": (batch_memory_mb, 900, 2), "check": (512, 30, 1),
                 "merge": (3008, 900, 4)}
        self.functions: dict[str, lambda_.DockerImageFunction] = {}
        for step, (memory, timeout, scratch) in sizes.items():
            function = lambda_.DockerImageFunction(
                self, f"{step.capitalize()}Function",
                description=f"signal-engine backtest fan-out: {step}",
                code=_engine_image(HANDLERS[step]),
                architecture=lambda_.Architecture.X86_64, memory_size=memory, timeout=Duration.seconds(timeout),
                ephemeral_storage_size=Size.gibibytes(scratch),
                environment=environment, environment_encryption=environment_key, role=self.role, vpc=vpc,
                vpc_subnets=subnets if vpc is not None else None,
                security_groups=list(security_groups) or None, tracing=lambda_.Tracing.ACTIVE,
                log_group=logs.LogGroup(self, f"{step.capitalize()}Logs", retention=log_retention,
                                        removal_policy=removal_policy),
            )
            skip_checkov(function, "CKV_AWS_116", "Invoked synchronously by the state machine, which retries and "
                         "reports failures itself; a dead-letter queue would never receive an event.")
            skip_checkov(function, "CKV_AWS_115", "Concurrency is bounded by the Distributed Map's "
                         "MaxConcurrency; reserving it needs a raised Lambda quota on new accounts.")
            self.functions[step] = function
        acknowledge_tracing(self.role)
        if environment_key is not None:
            grant_decrypt(self.role, environment_key=environment_key, secrets=[])

        self.notify_failure = notify_then_fail(self, "NotifyBacktestFailure", "BacktestFailed", alarm_topic,
                                               subject="signal-engine backtest failed", what="Backtest")
        definition = (sfn.Chain.start(self._plan()).next(self._batches(max_concurrency))
                      .next(self._check()).next(self._merge()))
        log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=removal_policy)
        self.state_machine = sfn.StateMachine(
            self, "StateMachine", definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=Duration.hours(24), tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        )
        self._grant_processing_jobs()

    def _invoke(self, state_id: str, step: str, payload: sfn.TaskInput | None, result_path: str,
                *, retry_all: bool = False) -> tasks.LambdaInvoke:
        """The step's function with the payload (the state's input when None), its response at ``result_path``."""
        options: dict[str, Any] = {} if payload is None else {"payload": payload}
        task = tasks.LambdaInvoke(self, state_id, lambda_function=self.functions[step], payload_response_only=True,
                                  retry_on_service_exceptions=False, result_path=result_path, **options)
        task.add_retry(errors=list(INPUT_ERRORS), max_attempts=0)
        task.add_retry(errors=["States.ALL"] if retry_all else list(LAMBDA_SERVICE_ERRORS),
                       interval=self._retry_interval, max_attempts=2, backoff_rate=2.0)
        return task

    def _plan(self) -> sfn.IChainable:
        plan = self._invoke("Plan", "plan", sfn.TaskInput.from_object({
            "run": sfn.JsonPath.string_at("$$.Execution.Name"), "input": sfn.JsonPath.entire_payload}), "$.plan")
        plan.add_catch(self.notify_failure, result_path="$.error")
        return plan

    def _batches(self, max_concurrency: int) -> sfn.IChainable:
        on_lambda = self._invoke("BatchOnLambda", "batch", None, "$.result",
                                 retry_all=True)
        on_processing = self._processing_job("BatchOnProcessing", "$.job", [
            ("run", f"States.Format('s3://{self.artifacts_bucket.bucket_name}/{BACKTESTS_PREFIX}/{{}}', $.inputs)",
             f"{PROCESSING_ROOT}/input/run")],
            ("batch", f"States.Format('s3://{self.artifacts_bucket.bucket_name}/{BACKTESTS_PREFIX}/{{}}', $.out)",
             f"{PROCESSING_ROOT}/output/batch"),
            f"States.Array('batch', '--inputs', '{PROCESSING_ROOT}/input/run', '--batch', $.batch, '--out', "
            f"'{PROCESSING_ROOT}/output/batch')", run_path="$.run")
        on_processing.add_retry(errors=["States.ALL"], interval=self._retry_interval, max_attempts=2,
                                backoff_rate=2.0)
        failed = sfn.Pass(self, "BatchFailed", parameters={
            "batch": sfn.JsonPath.string_at("$.batch"), "runner": sfn.JsonPath.string_at("$.runner"),
            "failed": True, "error": sfn.JsonPath.string_at("$.error.Error"),
            "cause": sfn.JsonPath.string_at("$.error.Cause")})
        done = sfn.Pass(self, "BatchDone", parameters={
            "batch": sfn.JsonPath.string_at("$.batch"), "runner": sfn.JsonPath.string_at("$.runner"),
            "failed": False})
        for task in (on_lambda, on_processing):
            task.add_catch(failed, result_path="$.error")
            task.next(done)
        route = (sfn.Choice(self, "BatchRunner")
                 .when(sfn.Condition.string_equals("$.runner", "processing"), on_processing)
                 .otherwise(on_lambda))
        batches = sfn.DistributedMap(
            self, "RunBatches",
            item_reader=_RunItemsReader(bucket=self.artifacts_bucket, key=sfn.JsonPath.string_at("$.plan.items_key")),
            max_concurrency=max_concurrency, result_path="$.batches",
            map_execution_type=sfn.StateMachineType.STANDARD,
        )
        batches.item_processor(route)
        batches.add_catch(self.notify_failure, result_path="$.error")
        return batches

    def _check(self) -> sfn.IChainable:
        check = self._invoke("CheckBatches", "check", sfn.TaskInput.from_object({
            "run": sfn.JsonPath.string_at("$.plan.run"), "batches": sfn.JsonPath.object_at("$.batches")}),
            "$.checked")
        check.add_catch(self.notify_failure, result_path="$.error")
        return check

    def _merge(self) -> sfn.IChainable:
        bucket = self.artifacts_bucket.bucket_name
        run_uri = f"States.Format('s3://{bucket}/{BACKTESTS_PREFIX}/{{}}/{{}}', $.plan.run, '%s')"
        on_lambda = self._invoke("MergeOnLambda", "merge", sfn.TaskInput.from_object({
            "run": sfn.JsonPath.string_at("$.plan.run")}), "$.merge", retry_all=True)
        on_processing = self._processing_job("MergeOnProcessing", "$.plan.merge_job", [
            ("run", run_uri % "inputs", f"{PROCESSING_ROOT}/input/run"),
            ("batches", run_uri % "batches", f"{PROCESSING_ROOT}/input/batches")],
            ("result", run_uri % "result", f"{PROCESSING_ROOT}/output/result"),
            f"States.Array('merge', '--inputs', '{PROCESSING_ROOT}/input/run', '--batches', "
            f"'{PROCESSING_ROOT}/input/batches', '--out', '{PROCESSING_ROOT}/output/result')",
            run_path="$.plan.run", result_path="$.merge")
        on_processing.add_retry(errors=list(SAGEMAKER_THROTTLING), interval=self._retry_interval, max_attempts=4,
                                backoff_rate=2.0)
        merged = sfn.Pass(self, "Result", parameters={
            "run": sfn.JsonPath.string_at("$.plan.run"),
            "result": sfn.JsonPath.format(f"s3://{bucket}/{BACKTESTS_PREFIX}/{{}}/result/",
                                          sfn.JsonPath.string_at("$.plan.run")),
            "batches": sfn.JsonPath.string_at("$.plan.batches"),
            "merge": sfn.JsonPath.object_at("$.merge")}).next(sfn.Succeed(self, "Merged"))
        for task in (on_lambda, on_processing):
            task.add_catch(self.notify_failure, result_path="$.error")
            task.next(merged)
        return (sfn.Choice(self, "MergeRunner")
                .when(sfn.Condition.string_equals("$.plan.merge_runner", "processing"), on_processing)
                .otherwise(on_lambda))

    def _processing_job(self, state_id: str, job_path: str, inputs: Sequence[tuple[str, str, str]],
                        output: tuple[str, str, str], arguments: str, *, run_path: str,
                        result_path: str = "$.result") -> sfn.CustomState:
        """createProcessingJob.sync in the CPU training image; ``run_path`` is the run's (execution's) name, tagged
        in Base64 (a Distributed Map's item runs in a child execution, whose own name is not the run's)."""
        name, uri, local = output
        parameters: dict[str, Any] = {
            "ProcessingJobName.$": f"States.Format('{{}}-{{}}', {job_path}, $$.State.RetryCount)",
            "RoleArn": self.sagemaker_role.role_arn,
            "AppSpecification": {"ImageUri": self._image, "ContainerEntrypoint": ENTRY,
                                 "ContainerArguments.$": arguments},
            "ProcessingInputs": [{"InputName": input_name, "S3Input": {
                "S3Uri.$": input_uri, "LocalPath": input_local, "S3DataType": "S3Prefix", "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated"}} for input_name, input_uri, input_local in inputs],
            "ProcessingOutputConfig": {"Outputs": [{"OutputName": name, "S3Output": {
                "S3Uri.$": uri, "LocalPath": local, "S3UploadMode": "EndOfJob"}}]},
            "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": self._instance,
                                                      "VolumeSizeInGB": 30}},
            "StoppingCondition": {"MaxRuntimeInSeconds": int(self._max_runtime.to_seconds())},
            "Tags": [{"Key": "signal-engine:execution", "Value.$": f"States.Base64Encode({run_path})"}],
        }
        if self._vpc_config:
            parameters["NetworkConfig"] = {"VpcConfig": self._vpc_config}
        return sfn.CustomState(self, state_id, state_json={
            "Type": "Task", "Resource": SYNC_PROCESSING, "Parameters": parameters,
            "ResultSelector": {"job.$": "$.ProcessingJobName", "status.$": "$.ProcessingJobStatus"},
            "ResultPath": result_path})

    def _grant_processing_jobs(self) -> None:
        stack = Stack.of(self)
        role = self.state_machine.role
        grant_sync_jobs(role, "Processing", f"{PROCESSING_JOB_PREFIX}*", self.sagemaker_role)
        # RunBatches reads batches.json through S3, NotifyBacktestFailure publishes through SNS.
        grant_keys_via(role, (self.artifacts_bucket.encryption_key, "s3"), (self._alarm_topic.master_key, "sns"))
        for finding, why in self._wildcards(stack).items():
            acknowledge(role.node.find_child("DefaultPolicy") if "execution:" not in finding
                        else self.state_machine.node.find_child("DistributedMapPolicy"),
                        f"AwsSolutions-IAM5[Resource::{finding}]", f"Wildcard scoped to this fan-out: {why}.")

    def _wildcards(self, stack: Stack) -> dict[str, str]:
        """The state machine role's wildcard resources (as cdk-nag names them), each with its reason."""
        machine = stack.get_logical_id(typing.cast(CfnElement, self.state_machine.node.default_child))
        partition, region, account = (nag_text(stack, v) for v in (stack.partition, stack.region, stack.account))
        execution = (f'arn:{partition}:states:{region}:{account}:execution:{{"Fn::Select":[6,{{"Fn::Split":[":",'
                     f'{{"Ref":"{machine}"}}]}}]}}')
        found = {nag_text(stack, f"{function.function_arn}:*"): f"CDK's invoke grant covers the {step} function's "
                 "versions and aliases" for step, function in self.functions.items()}
        found[f"arn:{partition}:sagemaker:{region}:{account}:processing-job/{PROCESSING_JOB_PREFIX}*"] = (
            "processing jobs are named se-bt-<run hash>-<batch>-<retry> at run time")
        found[f"{execution}:*"] = "the Distributed Map describes and stops the child executions it starts"
        found[f"{execution}/*:*"] = "the Distributed Map redrives its failed child executions"
        found["*"] = "X-Ray and CloudWatch log delivery have no resource-level permissions"
        return found



def _engine_image(handler: str) -> lambda_.DockerImageCode:
    """The book step's image (containers/book_step/Dockerfile, which also copies lambda_src/backtest_fanout)."""
    from stacks.book import DOCKERFILE, EXCLUDE, IMAGE_NAME, ROOT

    return lambda_.DockerImageCode.from_image_asset(
        str(ROOT), file=DOCKERFILE, cmd=[handler], platform=ecr_assets.Platform.LINUX_AMD64, exclude=EXCLUDE,
        ignore_mode=IgnoreMode.DOCKER, display_name=IMAGE_NAME)


class _RunItemsReader(sfn.S3JsonItemReader):
    """The plan's ``batches.json``, read with s3:GetObject on the runs' prefix only (CDK's reader grants the whole
    bucket when the key is a JSONPath)."""

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        assert self.bucket is not None
        return [iam.PolicyStatement(actions=["s3:GetObject"],
                                    resources=[self.bucket.arn_for_objects(f"{BACKTESTS_PREFIX}/*")])]
