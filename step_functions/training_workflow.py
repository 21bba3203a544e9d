"""The training workflow on Step Functions: one state (or a Map of states) per step of ``signal_engine.workflow.steps``.

::

    ApplyDefaults -> MergeInput (run id: States.UUID()) -> ExecutionNameTaggable -> ValidateInput
    -> PrepareDataset                       SageMaker createTrainingJob.sync (entry prepare, CPU, CPU image); writes
                                            the plan (PrepareDatasetWithNews when the hyperparameters turn moe.news
                                            on: the same job with a news channel, <news_prefix>/ of the datasets
                                            bucket; the CPU image has the text encoder)
       -> ReadPlan                          s3:getObject runs/<execution>/plan.json (each expert, and steps.train_gate
                                            and steps.evaluate: gpu or cpu)
    -> TrainExperts  (Map over the plan)    per expert: gpu (a Keras model) -> GPU instance, TensorFlow image;
                                            cpu -> CPU instance, slim CPU image (entry train_expert); the input's
                                            ``tune`` goes to each as hyperparameter tune (true: Optuna tunes the
                                            trend expert first, its studies kept in that job's model.tar.gz; with
                                            trend_pooled also every refit of its pooled walk-forward)
    -> TrainGate                            createTrainingJob.sync (entry train_gate: walk-forward, gate, confidence;
                                            its experts channel carries the pooled trend walk-forward, trend_pooled;
                                            ``tune`` too: every refit of its walk-forward is tuned the same way)
    -> Evaluate                             createTrainingJob.sync (entry evaluate: quality gate, bundle, report)
       (each on the plan's accelerator, as the experts: TrainGateAccelerator -> TrainGateGpuJob | TrainGateCpuJob;
        gpu only when the job fits a Keras model, e.g. an MLP gate; a plan without it -> NotifyFailure)
       (TrainGateFromBacktest, EvaluateFromBacktest when the input names a backtest fan-out run, walk_forward_run:
        the same jobs with a walkforward channel, that run's batches, read instead of walking forward)
       -> ReadDecision                      s3:getObject runs/<execution>/evaluation.json
    -> QualityGate   (Choice on passed)     failed -> NotifyQualityGateFailed -> QualityGateFailed (Fail)
    -> Publish -> CreateModel -> CreateEndpointConfig -> FindEndpoint -> EndpointExists
       -> CreateEndpoint | UpdateEndpoint -> WaitForEndpoint -> DescribeEndpoint -> EndpointInService
       -> PromoteVersion (s3:putObject models/CURRENT) -> Deployed, only when the endpoint is InService on this
          run's endpoint config; a failed update (SageMaker rolls back to the old config, InService, with a
          FailureReason) or any other end state -> EndpointNotDeployed -> NotifyFailure, CURRENT unchanged.

Every task retries throttling and catches everything else into ``NotifyFailure`` (SNS, with the error and its
cause) -> ``TrainingFailed``. A failed training job is not rerun (SageMaker's RetryStrategy retries internal
errors). SageMaker names come from the run id, not the execution name, so they are valid for any execution name:
``se-<run id>-<step>-<attempt>`` (jobs), ``signal-engine-<run id>`` (model, endpoint config); tags carry the
execution name (Base64 when it holds characters tags refuse), the run id and, on models and configs, the
endpoint. ``EndpointCleanup`` deletes the endpoint and those tagged configs and models when the stack is deleted.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from signal_engine.storage.news_files import NEWS_PREFIX
from signal_engine.workflow.steps import STEPS, Step
from stacks.constructs.nag import acknowledge, nag_text
from step_functions.endpoint_cleanup import EndpointCleanup

SYNC_TRAINING = "arn:aws:states:::sagemaker:createTrainingJob.sync"
# Errors of the CreateTrainingJob call itself. A job that fails (code error, capacity, stopped) ends the .sync
# task with States.TaskFailed, which is not retried here: a rerun would repeat a code error on paid instances,
# and SageMaker retries a job that fails with an InternalServerError itself (the job's RetryStrategy).
THROTTLING_ERRORS = ("ThrottlingException", "SageMaker.ThrottlingException", "SageMaker.AmazonSageMakerException",
                     "SageMaker.ResourceLimitExceededException")
ENDPOINT_ERRORS = ("ThrottlingException", "SageMaker.ThrottlingException", "SageMaker.SageMakerException",
                   "SageMaker.AmazonSageMakerException")
DEFAULT_EXPERTS = ("trend", "levels", "volatility")
# The steps that walk forward unless the execution names a backtest fan-out run whose batches they read instead
# (``walk_forward_run``); their states then run as ``<State>FromBacktest`` with a ``walkforward`` channel.
WALK_FORWARD_STEPS = ("train_gate", "evaluate")
# The accelerators a job may run on (signal_engine.workflow.plan): ``gpu`` is a GPU instance with the NVIDIA
# TensorFlow image; ``cpu`` a CPU instance with the slim CPU image (no TensorFlow: no pull of the NVIDIA image, and no
# TensorFlow import by the training toolkit at the job's start). A step's ``instance`` names one, or ``plan``: the
# training plan's (each expert's job, the train_gate and evaluate jobs).
ACCELERATORS = ("gpu", "cpu")
# Where the plan (read to $.plan.document) names the accelerator of the train_gate and evaluate jobs.
PLANNED_STEP = "$.plan.document.steps.{}.accelerator"
FROM_BACKTEST = "FromBacktest"
# With the MoE's news slot (``moe.news`` true in the input's hyperparameters) the prepare job runs as
# ``PrepareDatasetWithNews`` with a ``news`` channel, <news_prefix>/ of the datasets bucket (the bars export's
# news/<SYMBOL>.jsonl): each bar's news_score is scored there from the stored news.
WITH_NEWS = "WithNews"
NEWS_SLOT = "$.run.hyperparameters.moe.news"
BACKTESTS_PREFIX = "backtests"  # the backtest fan-out's runs in the artifacts bucket
REPORT_KEY = "runs/{}/evaluation.json"
PLAN_KEY = "runs/{}/plan.json"
# Generated SageMaker names: se-<run id>-<step>-<attempt> (training jobs), signal-engine-<run id> (model and
# endpoint config). The run id is States.UUID() (36 characters), so every name fits SageMaker's
# ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62} whatever the execution name; the execution name goes into a tag.
JOB_PREFIX, MODEL_PREFIX = "se-", "signal-engine-"
EXECUTION_TAG, RUN_TAG, ENDPOINT_TAG = "signal-engine:execution", "signal-engine:run", "signal-engine:endpoint"
# Characters an execution name may hold but a SageMaker tag value may not (ASCII); such a name is tagged in Base64.
UNTAGGABLE = ("!", "'", "(", ")")
# Endpoint states that end by themselves; any other state but InService ends the deployment.
ENDPOINT_TRANSITIONS = ("Creating", "Updating", "SystemUpdating", "RollingBack")



@dataclass(frozen=True)
class ServerlessEndpoint:
    """SageMaker Serverless Inference for the experts' endpoint: no idle instance, billed per request and second;
    memory 1024-6144 MB in steps of 1024, at most ``max_concurrency`` requests at once (cold starts after idle).
    Serverless endpoints run outside the VPC (SageMaker supports no VPC config for them): the model is created
    without one, and its container reaches only its model data."""

    memory_mb: int = 2048
    max_concurrency: int = 5

    def __post_init__(self) -> None:
        if self.memory_mb not in range(1024, 6145, 1024):
            raise ValueError(f"serverless memory_mb must be 1024, 2048, ..., 6144, not {self.memory_mb}")
        if not 1 <= self.max_concurrency <= 200:
            raise ValueError(f"serverless max_concurrency must be between 1 and 200, not {self.max_concurrency}")

def execution_input_defaults(*, training_instance_type: str, processing_instance_type: str,
                             endpoint_instance_type: str, profile: str, dataset_prefix: str,
                             news_prefix: str = NEWS_PREFIX) -> dict[str, Any]:
    """The execution input's defaults; an execution's input replaces any of these top-level keys."""
    return {
        "symbols": [],
        "start": "",
        "end": "",
        "profile": profile,
        "experts": list(DEFAULT_EXPERTS),
        "dataset_prefix": dataset_prefix,
        "news_prefix": news_prefix,
        "gpu_instance_type": training_instance_type,
        "cpu_instance_type": processing_instance_type,
        "endpoint_instance_type": endpoint_instance_type,
        "hyperparameters": {},
        "walk_forward_run": "",
        "tune": False,
    }


EXECUTION_INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "signal-engine training workflow execution input",
    "type": "object",
    "required": ["symbols"],
    "additionalProperties": False,
    "properties": {
        "symbols": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9.^=_-]{1,20}$"},
                    "minItems": 1, "description": "symbols to train on; <dataset_prefix>/<SYMBOL>.csv must exist"},
        "start": {"type": "string", "pattern": "^(\\d{4}-\\d{2}-\\d{2})?$", "description": "first date (inclusive)"},
        "end": {"type": "string", "pattern": "^(\\d{4}-\\d{2}-\\d{2})?$", "description": "last date (inclusive)"},
        "profile": {"enum": ["quick", "full"]},
        "experts": {"type": "array", "items": {"enum": list(DEFAULT_EXPERTS)}, "minItems": 3, "maxItems": 3,
                    "uniqueItems": True},
        "dataset_prefix": {"type": "string",
                           "description": "key prefix of the Yahoo-layout CSVs in the datasets bucket"},
        "news_prefix": {"type": "string", "pattern": "^[A-Za-z0-9._/-]{1,200}$",
                        "description": "key prefix of the news files (<SYMBOL>.jsonl, written by the bars export) "
                                       "in the datasets bucket; the prepare job's news channel when the "
                                       "hyperparameters turn the MoE's news slot on (moe.news)"},
        "gpu_instance_type": {"type": "string", "pattern": "^ml\\."},
        "cpu_instance_type": {"type": "string", "pattern": "^ml\\."},
        "endpoint_instance_type": {"type": "string", "pattern": "^ml\\."},
        "hyperparameters": {"type": "object", "description": "--config overrides by section, e.g. "
                            "{\"trend\": {\"n_estimators\": 200}, \"quality\": {\"max_confidence_ece\": 0.08}}"},
        "walk_forward_run": {"type": "string", "pattern": "^([A-Za-z0-9_-]{1,80})?$",
                             "description": "a finished execution of the backtest fan-out on the same symbols (in "
                                            "the same order), bars and config: the gate and evaluate jobs read its "
                                            "batches, backtests/<run>/batches/, instead of walking forward"},
        "tune": {"type": "boolean",
                 "description": "choose the trend expert's LightGBM settings (with trend_pooled: the pooled "
                                "network's, one study over every symbol) with an Optuna study on each symbol's "
                                "training rows before its fit, and at every refit of the walk-forward the quality "
                                "gate judges (the expert and train_gate jobs get hyperparameter tune=true; the "
                                "studies are kept in the trend job's model.tar.gz as tuning/optuna.db; trials and "
                                "timeout_s from the 'tuning' section of hyperparameters)"},
    },
}


class TrainingWorkflow(Construct):
    """The training workflow state machine and what it may touch.

    Parameters
    ----------
    datasets_bucket : holds the input bars, ``<dataset_prefix>/<SYMBOL>.csv`` (Yahoo layout), and the stored news,
        ``<news_prefix>/<SYMBOL>.jsonl`` (``signal_engine.storage.news_files``); read by the jobs.
    artifacts_bucket : run artefacts under ``runs/<execution>/`` and bundles under ``models/<version>/``.
    training_image, inference_image : the images of ``containers/training`` and ``containers/inference`` (an asset
        or an image URI).
    sagemaker_role : the role the training jobs and the endpoint assume.
    alarm_topic : failures and failed quality gates are published here, with their cause.
    vpc, subnets, security_groups : optional; when given, jobs and the model run inside them.
    endpoint_serverless : serve the experts with Serverless Inference instead of ``endpoint_instance_type``.
    """

    def _endpoint_capacity(self) -> dict[str, Any]:
        """The production variant's capacity: instances of the run's endpoint_instance_type, or serverless."""
        if self.endpoint_serverless is None:
            return {"InitialInstanceCount": 1, "InstanceType": sfn.JsonPath.string_at("$.run.endpoint_instance_type")}
        return {"ServerlessConfig": {"MemorySizeInMB": self.endpoint_serverless.memory_mb,
                                     "MaxConcurrency": self.endpoint_serverless.max_concurrency}}

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        datasets_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        training_image: ecr_assets.DockerImageAsset | str,
        inference_image: ecr_assets.DockerImageAsset | str,
        sagemaker_role: iam.IRole,
        alarm_topic: sns.ITopic,
        cpu_training_image: ecr_assets.DockerImageAsset | str | None = None,
        vpc: ec2.IVpc | None = None,
        subnets: ec2.SubnetSelection | None = None,
        security_groups: Sequence[ec2.ISecurityGroup] = (),
        training_instance_type: str = "ml.g5.xlarge",
        processing_instance_type: str = "ml.m5.xlarge",
        endpoint_instance_type: str = "ml.m5.large",
        endpoint_serverless: ServerlessEndpoint | None = None,
        endpoint_name: str = "signal-engine-experts",
        profile: str = "quick",
        dataset_prefix: str = "bars/1d",
        models_prefix: str = "models",
        max_runtime: Duration | None = None,
        endpoint_poll: Duration | None = None,
        volume_size_gb: int = 30,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
        cleanup_on_delete: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        self.datasets_bucket, self.artifacts_bucket = datasets_bucket, artifacts_bucket
        self.sagemaker_role, self.alarm_topic = sagemaker_role, alarm_topic
        self.endpoint_name, self.models_prefix = endpoint_name, models_prefix.strip("/")
        self.training_image_uri = _image_uri(training_image, sagemaker_role)
        self.cpu_training_image_uri = (self.training_image_uri if cpu_training_image is None
                                       else _image_uri(cpu_training_image, sagemaker_role))
        self.inference_image_uri = _image_uri(inference_image, sagemaker_role)
        max_runtime = max_runtime or Duration.hours(4)
        self._max_runtime, self._volume = max_runtime, volume_size_gb
        self._poll = endpoint_poll or Duration.minutes(1)
        self._vpc_config = vpc_config(vpc, subnets, security_groups)
        self.endpoint_serverless = endpoint_serverless
        self.defaults = execution_input_defaults(
            training_instance_type=training_instance_type, processing_instance_type=processing_instance_type,
            endpoint_instance_type=endpoint_instance_type, profile=profile, dataset_prefix=dataset_prefix.strip("/"))
        datasets_bucket.grant_read(sagemaker_role)
        artifacts_bucket.grant_read_write(sagemaker_role)

        self.notify_failure = notify_then_fail(self, "NotifyFailure", "TrainingFailed", alarm_topic,
                                               subject="signal-engine training failed", what="Training run")
        self.step_states: dict[str, str] = {}
        definition = self._preamble()
        self._steps(STEPS)
        log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=removal_policy)
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=Duration.hours(max_runtime.to_hours() * 3 + 2),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        )
        self._grant_training_jobs()
        self.cleanup = EndpointCleanup(self, "Cleanup", endpoint_name=endpoint_name) if cleanup_on_delete else None

    # -- preamble: defaults and validation -----------------------------------------------------------------

    def _preamble(self) -> sfn.IChainable:
        defaults = sfn.Pass(self, "ApplyDefaults", result=sfn.Result.from_object(self.defaults),
                            result_path="$.defaults")
        merge = sfn.Pass(self, "MergeInput", parameters={
            "run": sfn.JsonPath.json_merge(sfn.JsonPath.object_at("$.defaults"),
                                           sfn.JsonPath.object_at("$$.Execution.Input")),
            "ids": {"run": sfn.JsonPath.uuid(), "execution": sfn.JsonPath.string_at("$$.Execution.Name")},
        })
        encode = sfn.Pass(self, "EncodeExecutionTag", parameters={
            "run": sfn.JsonPath.string_at("$.ids.run"),
            "execution": sfn.JsonPath.format("base64:{}", sfn.JsonPath.base64_encode(
                sfn.JsonPath.string_at("$.ids.execution")))}, result_path="$.ids")
        taggable = sfn.Choice(self, "ExecutionNameTaggable").when(
            sfn.Condition.or_(*(sfn.Condition.string_matches("$.ids.execution", f"*{c}*") for c in UNTAGGABLE)),
            encode)
        invalid = sfn.Fail(self, "InvalidInput", error="InvalidInput",
                           cause="execution input needs 'symbols': a non-empty list, e.g. {\"symbols\": [\"SPX\"]}")
        validate = sfn.Choice(self, "ValidateInput")
        self._after_validation = validate
        self._invalid = invalid
        encode.next(validate)
        taggable.otherwise(validate)
        return sfn.Chain.start(defaults).next(merge).next(taggable)

    def _steps(self, steps: Sequence[Step]) -> sfn.IChainable:
        builders = {"job": self._job_step, "map_job": self._map_step, "choice": self._choice_step,
                    "deploy": self._deploy_step}
        fragments: list[tuple[sfn.IChainable, Any]] = [builders[step.kind](step) for step in steps]
        for (_, tail), (head, _) in itertools.pairwise(fragments):
            tail(head)
        first = fragments[0][0]
        self._after_validation.when(
            sfn.Condition.and_(sfn.Condition.is_present("$.run.symbols[0]"),
                               sfn.Condition.is_string("$.run.symbols[0]")), first
        ).otherwise(self._invalid)
        return self._after_validation

    # -- SageMaker jobs -----------------------------------------------------------------------------------

    def _job_step(self, step: Step) -> tuple[sfn.IChainable, Any]:
        experts = _channel("experts", f"States.Format('s3://{self.artifacts_bucket.bucket_name}/runs/{{}}/experts/', "
                                      "$$.Execution.Name)")
        specs: dict[str, tuple[list[dict[str, Any]], str, dict[str, Any]]] = {
            "prepare_dataset": (
                [_channel("raw", f"States.Format('s3://{self.datasets_bucket.bucket_name}/{{}}/', "
                                 "$.run.dataset_prefix)")],
                "$.dataset",
                {"experts.$": "States.JsonToString($.run.experts)",
                 "plan.$": f"States.Format('s3://{self.artifacts_bucket.bucket_name}/{PLAN_KEY}', "
                           "$$.Execution.Name)"}),
            # the experts' outputs: the bundle's models for evaluate; for train_gate, the pooled trend expert's
            # out-of-sample probabilities (moe.experts.trend: trend_pooled), which its walk-forward reads
            # tune: every refit of its walk-forward (the quality gate's metrics) is tuned as the trend job's fit is
            "train_gate": ([_channel("dataset", "$.dataset.model"), experts], "$.gate",
                           {"tune.$": "States.JsonToString($.run.tune)"}),
            "evaluate": (
                [_channel("dataset", "$.dataset.model"), _channel("gate", "$.gate.model"), experts],
                "$.evaluation",
                {"registry": f"s3://{self.artifacts_bucket.bucket_name}/{self.models_prefix}",
                 "report.$": f"States.Format('s3://{self.artifacts_bucket.bucket_name}/{REPORT_KEY}', "
                             "$$.Execution.Name)"}),
        }
        channels, result_path, extra = specs[step.name]
        # SageMaker job names allow letters, digits and hyphens only.
        job_suffix = f"'{(step.entry or step.name).replace('_', '-')}'"

        def job(variant_channels: list[dict[str, Any]],
                variant: str = "") -> tuple[sfn.IChainable, list[sfn.CustomState]]:
            return self._job_on_accelerator(
                step, lambda image, instance, suffix: self._training_job(
                    step, variant_channels, result_path, extra, job_suffix=job_suffix, image=image,
                    instance=instance, id_suffix=variant + suffix), variant=variant)

        head, ends = job(channels)
        self.step_states[step.name] = step.state
        if step.name == "prepare_dataset":  # the stored news too, when the MoE's news slot is trained
            news = _channel("news", f"States.Format('s3://{self.datasets_bucket.bucket_name}/{{}}/', "
                                    "$.run.news_prefix)")
            scoring, scoring_ends = job([*channels, news], WITH_NEWS)
            head = sfn.Choice(self, f"{step.state}ReadsNews").when(sfn.Condition.not_(news_slot()), head) \
                .otherwise(scoring)
            ends = [*ends, *scoring_ends]
        if step.name in WALK_FORWARD_STEPS:  # a backtest fan-out's batches instead of walking forward here
            batches = _channel("walkforward", f"States.Format('s3://{self.artifacts_bucket.bucket_name}/"
                                              f"{BACKTESTS_PREFIX}/{{}}/batches/', $.run.walk_forward_run)")
            reading, reading_ends = job([*channels, batches], FROM_BACKTEST)
            head = sfn.Choice(self, f"{step.state}WalksForward").when(
                sfn.Condition.string_equals("$.run.walk_forward_run", ""), head).otherwise(reading)
            ends = [*ends, *reading_ends]

        def then(next_state: sfn.IChainable) -> None:
            for end in ends:
                end.next(next_state)

        # What a job wrote to a known key, read back: prepare's training plan, evaluate's report.
        reads = {"prepare_dataset": ("ReadPlan", PLAN_KEY, "$.plan", "document"),
                 "evaluate": ("ReadDecision", REPORT_KEY, "$.decision", "report")}
        if step.name not in reads:
            return head, then
        read_id, key, read_path, field = reads[step.name]
        read = tasks.CallAwsService(
            self, read_id, service="s3", action="getObject",
            parameters={"Bucket": self.artifacts_bucket.bucket_name,
                        "Key": sfn.JsonPath.format(key, sfn.JsonPath.string_at("$$.Execution.Name"))},
            iam_resources=[self.artifacts_bucket.arn_for_objects("runs/*")],
            result_selector={field: sfn.JsonPath.string_to_json(sfn.JsonPath.string_at("$.Body"))},
            result_path=read_path,
        )
        _protect(read, self.notify_failure, ("ThrottlingException", "S3.SdkClientException"))
        then(read)
        return head, read.next

    def _image(self, accelerator: str) -> str:
        return self.training_image_uri if accelerator == "gpu" else self.cpu_training_image_uri

    def _job_on_accelerator(self, step: Step, build: Callable[[str, str, str], sfn.CustomState], *,
                            variant: str = "") -> tuple[sfn.IChainable, list[sfn.CustomState]]:
        """The job of ``step`` (``build(image, instance path, state id suffix)``) on the accelerator of its
        ``instance``, or, for ``plan``, one job per accelerator behind a Choice on the plan's accelerator for the step
        (``<state><variant>Accelerator`` -> ``<state><variant>GpuJob`` | ``<state><variant>CpuJob``); returns the
        entry state and the jobs."""
        if step.instance != "plan":
            job = build(self._image(step.instance), f"$.run.{step.instance}_instance_type", "")
            return job, [job]
        jobs = {accelerator: build(self._image(accelerator), f"$.run.{accelerator}_instance_type",
                                   f"{accelerator.capitalize()}Job") for accelerator in ACCELERATORS}
        base = step.state + variant
        planned = "$.accelerator" if step.kind == "map_job" else PLANNED_STEP.format(step.name)
        route = sfn.Choice(self, f"{base}Accelerator")
        for accelerator, job in jobs.items():
            route.when(sfn.Condition.and_(sfn.Condition.is_present(planned), sfn.Condition.is_string(planned),
                                          sfn.Condition.string_equals(planned, accelerator)), job)
        cause = f"the training plan names an accelerator other than {' or '.join(ACCELERATORS)} for {step.name}"
        if step.kind == "map_job":  # fails the Map, which catches into NotifyFailure
            route.otherwise(sfn.Fail(self, f"{base}UnknownAccelerator", error="UnknownAccelerator", cause=cause))
        else:
            route.otherwise(sfn.Pass(self, f"{base}UnknownAccelerator", result_path="$.error", parameters={
                "Error": "UnknownAccelerator", "Cause": cause}).next(self.notify_failure))
        return route, list(jobs.values())

    def _map_step(self, step: Step) -> tuple[sfn.IChainable, Any]:
        """One job per expert of the plan: on a GPU instance with the training (TensorFlow) image when the plan
        says ``gpu`` (a Keras model), else on a CPU instance with the CPU training image."""
        route, _ = self._job_on_accelerator(step, lambda image, instance, suffix: self._training_job(
            step, [_channel("dataset", "$.dataset.model")], None,
            {"expert.$": "$.expert", "tune.$": "States.JsonToString($.run.tune)"},
            job_suffix="$.expert", id_suffix=suffix,
            output=f"States.Format('s3://{self.artifacts_bucket.bucket_name}/runs/{{}}/experts', "
                   "$$.Execution.Name)",
            catch=False, image=image, instance=instance))
        mapped = sfn.Map(
            self, step.state, items_path="$.plan.document.experts", max_concurrency=len(DEFAULT_EXPERTS),
            item_selector={"expert": sfn.JsonPath.string_at("$$.Map.Item.Value.expert"),
                           "accelerator": sfn.JsonPath.string_at("$$.Map.Item.Value.accelerator"),
                           "run": sfn.JsonPath.object_at("$.run"), "dataset": sfn.JsonPath.object_at("$.dataset"),
                           "ids": sfn.JsonPath.object_at("$.ids")},
            result_path="$.experts",
        )
        mapped.item_processor(route)
        mapped.add_catch(self.notify_failure, result_path="$.error")
        self.step_states[step.name] = step.state
        return mapped, mapped.next

    def _training_job(self, step: Step, channels: list[dict[str, Any]], result_path: str | None,
                      extra_hyperparameters: dict[str, Any], *, job_suffix: str, image: str, instance: str,
                      id_suffix: str = "", output: str | None = None, catch: bool = True) -> sfn.CustomState:
        assert step.entry is not None
        output = output or (f"States.Format('s3://{self.artifacts_bucket.bucket_name}/runs/{{}}/{step.entry}', "
                            "$$.Execution.Name)")
        parameters: dict[str, Any] = {
            "TrainingJobName.$": f"States.Format('{JOB_PREFIX}{{}}-{{}}-{{}}', $.ids.run, {job_suffix}, "
                                 "$$.State.RetryCount)",
            "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
            "RoleArn": self.sagemaker_role.role_arn,
            "HyperParameters": {
                "sagemaker_program": f"{step.entry}.py",
                "sagemaker_submit_directory": "/opt/ml/code",
                "profile.$": "$.run.profile",
                "symbols.$": "States.JsonToString($.run.symbols)",
                "start.$": "$.run.start",
                "end.$": "$.run.end",
                "config.$": "States.JsonToString($.run.hyperparameters)",
                **extra_hyperparameters,
            },
            "InputDataConfig": channels,
            "OutputDataConfig": {"S3OutputPath.$": output},
            "ResourceConfig": {"InstanceCount": 1, "InstanceType.$": instance, "VolumeSizeInGB": self._volume},
            "StoppingCondition": {"MaxRuntimeInSeconds": int(self._max_runtime.to_seconds())},
            "RetryStrategy": {"MaximumRetryAttempts": 2},
            "Tags": [{"Key": "signal-engine:step", "Value": step.name}, *_run_tags()],
        }
        if self._vpc_config:
            parameters["VpcConfig"] = self._vpc_config
        state_json: dict[str, Any] = {
            "Type": "Task", "Resource": SYNC_TRAINING, "Parameters": parameters,
            "ResultSelector": {"job.$": "$.TrainingJobName", "model.$": "$.ModelArtifacts.S3ModelArtifacts"},
        }
        if result_path is not None:
            state_json["ResultPath"] = result_path
        state = sfn.CustomState(self, step.state + id_suffix, state_json=state_json)
        state.add_retry(errors=list(THROTTLING_ERRORS), interval=Duration.seconds(30), max_attempts=5,
                        backoff_rate=2.0)
        if catch:
            state.add_catch(self.notify_failure, result_path="$.error")
        return state

    # -- the quality gate ---------------------------------------------------------------------------------

    def _choice_step(self, step: Step) -> tuple[sfn.IChainable, Any]:
        choice = sfn.Choice(self, step.state)
        notify = tasks.SnsPublish(
            self, "NotifyQualityGateFailed", topic=self.alarm_topic, subject="signal-engine quality gate failed",
            message=sfn.TaskInput.from_json_path_at(
                "States.Format('Training run {} produced version {}, kept but not deployed: no symbol passed "
                "the quality gate. Checks: {}', $$.Execution.Name, $.decision.report.version, "
                "States.JsonToString($.decision.report.checks))"),
            result_path=sfn.JsonPath.DISCARD,
        )
        _protect(notify, self.notify_failure, ("SNS.ThrottledException",))
        notify.next(sfn.Fail(self, "QualityGateFailed", error="QualityGateFailed",
                             cause="no symbol of the trained bundle passed the quality gate; see its decision.json"))
        self.step_states[step.name] = step.state

        def attach(next_state: sfn.IChainable) -> None:
            choice.when(sfn.Condition.boolean_equals("$.decision.report.passed", True), next_state)
            choice.otherwise(notify)

        return choice, attach

    # -- publish: model, endpoint config, endpoint, CURRENT -----------------------------------------------

    def _deploy_step(self, step: Step) -> tuple[sfn.IChainable, Any]:
        stack = Stack.of(self)
        name = sfn.JsonPath.string_at("$.publish.name")
        publish = sfn.Pass(self, step.state, parameters={
            "name": sfn.JsonPath.format(f"{MODEL_PREFIX}{{}}", sfn.JsonPath.string_at("$.ids.run")),
            "version": sfn.JsonPath.string_at("$.decision.report.version"),
        }, result_path="$.publish")
        pass_role = iam.PolicyStatement(actions=["iam:PassRole"], resources=[self.sagemaker_role.role_arn],
                                        conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})
        container: dict[str, Any] = {
            "Image": self.inference_image_uri,
            "ModelDataUrl": sfn.JsonPath.string_at("$.evaluation.model"),
            "Environment": {"SIGNAL_ENGINE_MODEL_VERSION": sfn.JsonPath.string_at("$.publish.version")},
        }
        tags = [{"Key": EXECUTION_TAG, "Value": sfn.JsonPath.string_at("$.ids.execution")},
                {"Key": RUN_TAG, "Value": sfn.JsonPath.string_at("$.ids.run")},
                {"Key": ENDPOINT_TAG, "Value": self.endpoint_name}]
        model_parameters: dict[str, Any] = {"ModelName": name, "ExecutionRoleArn": self.sagemaker_role.role_arn,
                                            "PrimaryContainer": container, "Tags": tags}
        if self._vpc_config and self.endpoint_serverless is None:  # Serverless Inference takes no VPC config
            model_parameters["VpcConfig"] = self._vpc_config
        arn = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}"
        # Tags on create need sagemaker:AddTags on the new resource.
        add_tags = iam.PolicyStatement(actions=["sagemaker:AddTags"], resources=[
            f"{arn}:model/{MODEL_PREFIX}*", f"{arn}:endpoint-config/{MODEL_PREFIX}*"])
        create_model = tasks.CallAwsService(
            self, "CreateModel", service="sagemaker", action="createModel", parameters=model_parameters,
            iam_resources=[f"{arn}:model/signal-engine-*"], additional_iam_statements=[pass_role, add_tags],
            result_path=sfn.JsonPath.DISCARD)
        create_config = tasks.CallAwsService(
            self, "CreateEndpointConfig", service="sagemaker", action="createEndpointConfig",
            parameters={"EndpointConfigName": name, "ProductionVariants": [{
                "VariantName": "AllTraffic", "ModelName": name, **self._endpoint_capacity()}], "Tags": tags},
            iam_resources=[f"{arn}:endpoint-config/signal-engine-*"], result_path=sfn.JsonPath.DISCARD)
        find = tasks.CallAwsService(
            self, "FindEndpoint", service="sagemaker", action="listEndpoints",
            parameters={"NameContains": self.endpoint_name, "MaxResults": 100},
            iam_resources=["*"], result_selector={"names": sfn.JsonPath.list_at("$.Endpoints[*].EndpointName")},
            result_path="$.endpoint")
        check = sfn.Pass(self, "CheckEndpoint", parameters={
            "exists": sfn.JsonPath.array_contains(sfn.JsonPath.list_at("$.endpoint.names"), self.endpoint_name)},
            result_path="$.endpoint")
        endpoint_arn = f"{arn}:endpoint/{self.endpoint_name.lower()}"  # SageMaker ARNs are lower case
        create_endpoint = tasks.CallAwsService(
            self, "CreateEndpoint", service="sagemaker", action="createEndpoint",
            parameters={"EndpointName": self.endpoint_name, "EndpointConfigName": name},
            iam_resources=[endpoint_arn, f"{arn}:endpoint-config/signal-engine-*"], result_path=sfn.JsonPath.DISCARD)
        update_endpoint = tasks.CallAwsService(
            self, "UpdateEndpoint", service="sagemaker", action="updateEndpoint",
            parameters={"EndpointName": self.endpoint_name, "EndpointConfigName": name},
            iam_resources=[endpoint_arn, f"{arn}:endpoint-config/signal-engine-*"], result_path=sfn.JsonPath.DISCARD)
        describe = tasks.CallAwsService(
            self, "DescribeEndpoint", service="sagemaker", action="describeEndpoint",
            parameters={"EndpointName": self.endpoint_name}, iam_resources=[endpoint_arn],
            result_selector={"status": sfn.JsonPath.string_at("$.EndpointStatus"),
                             "config": sfn.JsonPath.string_at("$.EndpointConfigName"),
                             "described": sfn.JsonPath.object_at("$")}, result_path="$.endpoint")
        wait = sfn.Wait(self, "WaitForEndpoint", time=sfn.WaitTime.duration(self._poll))
        promote = tasks.CallAwsService(
            self, "PromoteVersion", service="s3", action="putObject",
            parameters={"Bucket": self.artifacts_bucket.bucket_name, "Key": f"{self.models_prefix}/CURRENT",
                        "Body": sfn.JsonPath.string_at("$.publish.version"), "ContentType": "text/plain"},
            iam_resources=[self.artifacts_bucket.arn_for_objects(f"{self.models_prefix}/CURRENT")],
            result_path=sfn.JsonPath.DISCARD)
        # The endpoint settled (InService, Failed, ...) without this run's config: a failed update leaves the
        # endpoint InService on its previous config, with a FailureReason. Say so, and do not promote.
        endpoint_failed = sfn.Pass(self, "EndpointNotDeployed", parameters={
            "Error": "EndpointNotDeployed",
            "Cause": sfn.JsonPath.format(
                "endpoint {} is {} on endpoint config {}, not on the config of this run {}; "
                "version {} is not promoted. FailureReason: {}",
                self.endpoint_name, sfn.JsonPath.string_at("$.endpoint.status"),
                sfn.JsonPath.string_at("$.endpoint.config"), name, sfn.JsonPath.string_at("$.publish.version"),
                sfn.JsonPath.string_at("$.endpoint.reason"))},
            result_path="$.error")
        endpoint_failed.next(self.notify_failure)
        reason = (sfn.Choice(self, "EndpointFailureReason")
                  .when(sfn.Condition.is_present("$.endpoint.described.FailureReason"),
                        sfn.Pass(self, "KeepFailureReason", parameters={
                            "reason": sfn.JsonPath.string_at("$.endpoint.described.FailureReason"),
                            "status": sfn.JsonPath.string_at("$.endpoint.status"),
                            "config": sfn.JsonPath.string_at("$.endpoint.config")},
                            result_path="$.endpoint").next(endpoint_failed))
                  .otherwise(sfn.Pass(self, "NoFailureReason", parameters={
                      "reason": "none given", "status": sfn.JsonPath.string_at("$.endpoint.status"),
                      "config": sfn.JsonPath.string_at("$.endpoint.config")},
                      result_path="$.endpoint").next(endpoint_failed)))
        for task in (create_model, create_config, find, create_endpoint, update_endpoint, describe, promote):
            _protect(task, self.notify_failure, ENDPOINT_ERRORS)
        in_service = (sfn.Choice(self, "EndpointInService")
                      .when(sfn.Condition.and_(
                          sfn.Condition.string_equals("$.endpoint.status", "InService"),
                          sfn.Condition.string_equals_json_path("$.endpoint.config", "$.publish.name")),
                            promote.next(sfn.Succeed(self, "Deployed")))
                      .when(sfn.Condition.or_(*(sfn.Condition.string_equals("$.endpoint.status", status)
                                                for status in ENDPOINT_TRANSITIONS)), wait)
                      .otherwise(reason))
        wait.next(describe)
        describe.next(in_service)
        # Wait once before the first DescribeEndpoint, so it sees the update under way, not the endpoint before it.
        exists = (sfn.Choice(self, "EndpointExists")
                  .when(sfn.Condition.boolean_equals("$.endpoint.exists", True), update_endpoint.next(wait))
                  .otherwise(create_endpoint.next(wait)))
        publish.next(create_model).next(create_config).next(find).next(check).next(exists)
        self.step_states[step.name] = step.state

        def tail(_next: sfn.IChainable) -> None:
            raise ValueError("publish must be the last workflow step")

        return publish, tail

    def _grant_training_jobs(self) -> None:
        stack = Stack.of(self)
        arn = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}"
        role = self.state_machine.role
        grant_sync_jobs(role, "Training", f"{JOB_PREFIX}*", self.sagemaker_role)
        # ReadDecision and PromoteVersion go through S3 to the bucket's key; NotifyFailure and
        # NotifyQualityGateFailed through SNS to the topic's key (the key policies delegate to IAM).
        grant_keys_via(role, (self.artifacts_bucket.encryption_key, "s3"), (self.alarm_topic.master_key, "sns"))
        scoped = {
            f"{self.artifacts_bucket.bucket_arn}/runs/*": "the run's evaluation report, read back by ReadDecision",
            f"{arn}:training-job/se-*": "training jobs are named se-<run id>-<step>-<retry> at run time",
            f"{arn}:model/signal-engine-*": "one model per execution, signal-engine-<run id>",
            f"{arn}:endpoint-config/signal-engine-*": "one endpoint config per execution, signal-engine-<run id>",
            "*": "sagemaker:ListEndpoints, X-Ray and CloudWatch log delivery have no resource-level permissions",
        }
        for resource, why in scoped.items():
            acknowledge(role, f"AwsSolutions-IAM5[Resource::{nag_text(stack, resource)}]",
                        f"Wildcard scoped to this workflow: {why}.")
        grants = {
            "Action::s3:GetObject*": "read the datasets and the run's artefacts",
            "Action::s3:GetBucket*": "locate the datasets and artifacts buckets",
            "Action::s3:List*": "list a channel's prefix before downloading it",
            "Action::s3:DeleteObject*": "replace a job's partial output when SageMaker retries it",
            "Action::s3:Abort*": "abort multipart uploads of large model archives",
            f"Resource::{nag_text(stack, self.datasets_bucket.bucket_arn)}/*": "any symbol's bars may be trained on",
            f"Resource::{nag_text(stack, self.artifacts_bucket.bucket_arn)}/*": "runs/ and models/ keys are made "
            "at run time",
        }
        for finding, why in grants.items():
            acknowledge(self.sagemaker_role, f"AwsSolutions-IAM5[{finding}]",
                        f"CDK bucket grant for the training jobs and endpoint: {why}.")


def notify_then_fail(scope: Construct, notify_id: str, error: str, topic: sns.ITopic, *, subject: str,
                     what: str) -> tasks.SnsPublish:
    """The state every failure is caught into: publish "<what> <execution> failed: <error>: <cause>" (the caught
    error at ``$.error``) to ``topic``, then fail with ``error``. Custom error names may not start with "States.",
    so the caught error's name goes into the cause."""
    notify = tasks.SnsPublish(
        scope, notify_id, topic=topic, subject=subject,
        message=sfn.TaskInput.from_json_path_at(
            f"States.Format('{what} {{}} failed: {{}}: {{}}', $$.Execution.Name, $.error.Error, $.error.Cause)"),
        result_path=sfn.JsonPath.DISCARD,
    )
    notify.next(sfn.Fail(
        scope, error, error=error,
        cause_path=sfn.JsonPath.format("{}: {}", sfn.JsonPath.string_at("$.error.Error"),
                                       sfn.JsonPath.string_at("$.error.Cause"))))
    return notify


def grant_sync_jobs(role: iam.IRole, kind: str, names: str, sagemaker_role: iam.IRole) -> None:
    """What a state machine's ``create<kind>Job.sync`` tasks need: the job calls on jobs named ``names``, the
    managed EventBridge rule through which Step Functions waits for them, and passing the jobs' role to SageMaker."""
    stack = Stack.of(role)
    resource = {"Training": "training-job", "Processing": "processing-job"}[kind]
    role.add_to_principal_policy(iam.PolicyStatement(
        actions=[f"sagemaker:{verb}{kind}Job" for verb in ("Create", "Describe", "Stop")] + ["sagemaker:AddTags"],
        resources=[f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:{resource}/{names}"]))
    role.add_to_principal_policy(iam.PolicyStatement(
        actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
        resources=[f"arn:{stack.partition}:events:{stack.region}:{stack.account}:rule/"
                   f"StepFunctionsGetEventsForSageMaker{kind}JobsRule"]))
    role.add_to_principal_policy(iam.PolicyStatement(
        actions=["iam:PassRole"], resources=[sagemaker_role.role_arn],
        conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))


def grant_keys_via(role: iam.IRole, *keys: tuple[kms.IKey | None, str]) -> None:
    """Decrypt and encrypt with each (key, service) pair's key through that service only (the key policies
    delegate to IAM); a None key (an unencrypted resource) needs nothing."""
    stack = Stack.of(role)
    for key, service in keys:
        if key is not None:
            role.add_to_principal_policy(iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"{service}.{stack.region}.{stack.url_suffix}"}}))


def _run_tags() -> list[dict[str, str]]:
    """Tags that trace a SageMaker resource back to its run: the execution name and the run id in its names."""
    return [{"Key": EXECUTION_TAG, "Value.$": "$.ids.execution"}, {"Key": RUN_TAG, "Value.$": "$.ids.run"}]


def news_slot() -> sfn.Condition:
    """The execution's hyperparameters turn the MoE's news slot on (``{"moe": {"news": true}}``)."""
    return sfn.Condition.and_(sfn.Condition.is_present(NEWS_SLOT), sfn.Condition.is_boolean(NEWS_SLOT),
                              sfn.Condition.boolean_equals(NEWS_SLOT, True))


def _channel(name: str, uri_path: str) -> dict[str, Any]:
    return {"ChannelName": name, "InputMode": "File", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri.$": uri_path, "S3DataDistributionType": "FullyReplicated"}}}


def _protect(task: sfn.TaskStateBase, failure: sfn.IChainable, errors: Sequence[str]) -> None:
    task.add_retry(errors=list(errors), interval=Duration.seconds(5), max_attempts=4, backoff_rate=2.0)
    task.add_catch(failure, result_path="$.error")



def _image_uri(image: ecr_assets.DockerImageAsset | str, role: iam.IRole) -> str:
    if isinstance(image, str):
        return image
    image.repository.grant_pull(role)
    return image.image_uri


def vpc_config(vpc: ec2.IVpc | None, subnets: ec2.SubnetSelection | None,
                security_groups: Sequence[ec2.ISecurityGroup]) -> dict[str, Any] | None:
    if vpc is None:
        return None
    if not security_groups:
        raise ValueError("TrainingWorkflow: give security_groups with vpc (the jobs' network interfaces need one)")
    return {"Subnets": vpc.select_subnets(**_selection(subnets)).subnet_ids,
            "SecurityGroupIds": [g.security_group_id for g in security_groups]}


def _selection(subnets: ec2.SubnetSelection | None) -> dict[str, Any]:
    if subnets is None:
        return {"subnet_type": ec2.SubnetType.PRIVATE_WITH_EGRESS}
    return {"subnet_type": subnets.subnet_type, "subnet_group_name": subnets.subnet_group_name,
            "subnets": subnets.subnets, "one_per_az": subnets.one_per_az}


def definition_json(state_machine_template: dict[str, Any]) -> str:
    """Helper for tests: the DefinitionString of a synthesized state machine with tokens left as markers."""
    return json.dumps(state_machine_template)
