"""Serving stack: the combiner Lambda and the Signal API (API Gateway), wired to the experts' SageMaker endpoint.

The endpoint itself is created and updated by the training workflow's deploy step (its model data is the bundle
that passed the quality gate), under the fixed name `experts_endpoint_name(config)`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from signal_engine.serving.batch_jobs import JOBS_PREFIX
from signal_engine.serving.bundle import EXPERT_KINDS, NEWS_EXPERT
from signal_engine.serving.schema import MAX_BARS, MAX_BATCH, SYMBOL_PATTERN, TIMEFRAME_PATTERN
from stacks.config import THIS_ACCOUNT, StageConfig
from stacks.constructs.lambda_role import acknowledge_tracing, grant_decrypt, grant_secret_read, lambda_vpc_role
from stacks.constructs.nag import acknowledge, skip_checkov
from stacks.constructs.ops_dashboard import OpsDashboard
from stacks.lambda_packages import asset_dir, ca_bundle_environment

RUNTIME = lambda_.Runtime.PYTHON_3_11
MODELS_PREFIX = "models"
# A batch job runs for at most this long (the worker's timeout: Lambda's largest).
BATCH_WORKER_TIMEOUT_S = 900
METRICS_NAMESPACE = "SignalEngine"
METRICS_SERVICE = "signal-engine-combiner"
VARIANT = "AllTraffic"


def experts_endpoint_name(config: StageConfig) -> str:
    """The experts' endpoint, created and updated by the training workflow; fixed, so no stack refers to another."""
    return f"{config.construct_id}-experts"


def _signal_request_object() -> apigateway.JsonSchema:
    """One SignalRequest as a JSON Schema object, from the patterns and limits of signal_engine.serving.schema."""
    price = apigateway.JsonSchema(type=apigateway.JsonSchemaType.NUMBER, exclusive_minimum=True, minimum=0)
    bar = apigateway.JsonSchema(
        type=apigateway.JsonSchemaType.OBJECT,
        required=["timestamp", "open", "high", "low", "close"],
        additional_properties=False,
        properties={
            "timestamp": apigateway.JsonSchema(type=apigateway.JsonSchemaType.STRING, min_length=10),
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": apigateway.JsonSchema(
                type=[apigateway.JsonSchemaType.NUMBER, apigateway.JsonSchemaType.NULL], minimum=0
            ),
        },
    )
    return apigateway.JsonSchema(
        type=apigateway.JsonSchemaType.OBJECT,
        required=["symbol"],
        additional_properties=False,
        properties={
            "symbol": apigateway.JsonSchema(type=apigateway.JsonSchemaType.STRING, pattern=SYMBOL_PATTERN),
            "timeframe": apigateway.JsonSchema(type=apigateway.JsonSchemaType.STRING, pattern=TIMEFRAME_PATTERN),
            "as_of": apigateway.JsonSchema(
                type=[apigateway.JsonSchemaType.STRING, apigateway.JsonSchemaType.NULL],
                pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}",
            ),
            "bars": apigateway.JsonSchema(
                type=[apigateway.JsonSchemaType.ARRAY, apigateway.JsonSchemaType.NULL],
                min_items=1,
                max_items=MAX_BARS,
                items=bar,
            ),
            "position": apigateway.JsonSchema(
                type=[apigateway.JsonSchemaType.NUMBER, apigateway.JsonSchemaType.NULL], minimum=-1, maximum=1
            ),
        },
    )


def signal_request_schema() -> apigateway.JsonSchema:
    """POST /signals body (JSON Schema draft 4)."""
    request = _signal_request_object()
    return apigateway.JsonSchema(schema=apigateway.JsonSchemaVersion.DRAFT4, title="SignalRequest",
                                 type=request.type, required=request.required,
                                 additional_properties=request.additional_properties, properties=request.properties)


def batch_request_schema() -> apigateway.JsonSchema:
    """POST /signals/batch body (JSON Schema draft 4): ``{"requests": [SignalRequest, ...]}``, 1 to MAX_BATCH."""
    return apigateway.JsonSchema(
        schema=apigateway.JsonSchemaVersion.DRAFT4,
        title="BatchRequest",
        type=apigateway.JsonSchemaType.OBJECT,
        required=["requests"],
        additional_properties=False,
        properties={"requests": apigateway.JsonSchema(type=apigateway.JsonSchemaType.ARRAY, min_items=1,
                                                      max_items=MAX_BATCH, items=_signal_request_object())},
    )


class ServingStack(Stack):
    """The combiner Lambda behind the Signal API, autoscaling of the experts' endpoint, and their dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        vpc: ec2.IVpc,
        app_subnets: ec2.SubnetSelection,
        app_security_group: ec2.ISecurityGroup,
        artifacts_bucket: s3.IBucket,
        experts_endpoint: str,
        models_read_policy: iam.IManagedPolicy,
        batch_jobs_policy: iam.IManagedPolicy,
        mysql_secret: secretsmanager.ISecret,
        alarm_topic: sns.ITopic,
        environment_key: kms.IKey,
        docdb_secret: secretsmanager.ISecret | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self._config = config
        self._environment_key = environment_key
        self._docdb_secret = docdb_secret
        self.model_bundle_uri = artifacts_bucket.s3_url_for_object(f"{MODELS_PREFIX}/")
        self.batch_jobs_uri = artifacts_bucket.s3_url_for_object(f"{JOBS_PREFIX}/")

        self.experts_endpoint = experts_endpoint
        if config.expert_autoscaling:
            self._autoscale(experts_endpoint)

        self.combiner = self._build_combiner(
            vpc, app_subnets, app_security_group, models_read_policy, batch_jobs_policy, mysql_secret
        )
        self.api = self._build_api()
        self.dashboard = OpsDashboard(
            self, "Dashboard", alarm_topic=alarm_topic, dashboard_name=f"{config.construct_id}-Serving"
        )
        self._add_monitoring()

    # --- expert endpoint ----------------------------------------------------------------------------------------

    def _autoscale(self, endpoint: str) -> None:
        """Scale the endpoint's instances on invocations per instance (the endpoint must exist already)."""
        config = self._config
        target = autoscaling.ScalableTarget(
            self,
            "ExpertsScaling",
            service_namespace=autoscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{endpoint}/variant/{VARIANT}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=config.expert_min_instances,
            max_capacity=config.expert_max_instances,
        )
        target.scale_to_track_metric(
            "InvocationsPerInstance",
            target_value=config.expert_invocations_per_instance,
            predefined_metric=autoscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )

    # --- combiner ---------------------------------------------------------------------------------------------

    def _serving_role(
        self, construct_id: str, description: str, policies: Sequence[iam.IManagedPolicy],
        mysql_secret: secretsmanager.ISecret,
    ) -> iam.Role:
        """A role that serves signals: the model bundles and batch jobs (``policies``), the experts' endpoint, the
        audit log's secret, the document store's (the headlines a bundle with the text expert reads) and the keys
        behind them."""
        role = lambda_vpc_role(self, construct_id, description=description)
        for policy in policies:
            role.add_managed_policy(policy)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="InvokeExperts",
                actions=["sagemaker:InvokeEndpoint"],
                resources=[
                    self.format_arn(
                        service="sagemaker", resource="endpoint", resource_name=self.experts_endpoint.lower()
                    )
                ],
            )
        )
        grant_secret_read(role, "AuditLogSecret", mysql_secret)
        secrets = [mysql_secret]
        if self._docdb_secret is not None:
            grant_secret_read(role, "NewsStoreSecret", self._docdb_secret)
            secrets.append(self._docdb_secret)
        grant_decrypt(role, environment_key=self._environment_key, secrets=secrets)
        acknowledge_tracing(role)
        return role

    def _serving_function(
        self, construct_id: str, *, description: str, handler: str, role: iam.IRole, timeout: Duration,
        network: tuple[ec2.IVpc, ec2.SubnetSelection, ec2.ISecurityGroup], mysql_secret: secretsmanager.ISecret,
        environment: dict[str, str], **options: Any,
    ) -> lambda_.Function:
        """A function of the combiner's package: the bundle, the experts and the audit log, in the app subnets."""
        config = self._config
        vpc, app_subnets, app_security_group = network
        log_group = logs.LogGroup(
            self, f"{construct_id}Logs", retention=config.log_retention, removal_policy=config.log_removal_policy
        )
        function = lambda_.Function(
            self,
            construct_id,
            description=description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=handler,
            code=lambda_.Code.from_asset(package := asset_dir(self, "combiner")),
            memory_size=config.combiner_memory_mb,
            timeout=timeout,
            role=role,
            vpc=vpc,
            vpc_subnets=app_subnets,
            security_groups=[app_security_group],
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            environment_encryption=self._environment_key,
            environment={
                "MODEL_BUNDLE_URI": self.model_bundle_uri,
                "EXPERT_ENDPOINTS": json.dumps(
                    {expert: self.experts_endpoint for expert in (*EXPERT_KINDS, NEWS_EXPERT)}, sort_keys=True
                ),
                "EXPERT_DEADLINE_MS": str(config.expert_deadline_ms),
                "SIGNAL_ENGINE_DATABASE_SECRET": mysql_secret.secret_arn,
                **self._documents_environment(package),
                "POWERTOOLS_SERVICE_NAME": METRICS_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "BATCH_JOBS_URI": self.batch_jobs_uri,
                "BATCH_JOB_TIMEOUT_S": str(BATCH_WORKER_TIMEOUT_S),
                **environment,
            },
            **options,
        )
        skip_checkov(function, "CKV_AWS_115", "The Signal API's stage throttle and usage plan (api_rate_limit, "
                     "api_burst_limit) bound the combiner's concurrency; reserving some would need a raised "
                     "Lambda concurrency quota on new accounts (README, Deploying to AWS).")
        acknowledge(
            function,
            "AwsSolutions-L1",
            "Python 3.11 is the interpreter the project is developed and tested on (pyproject requires-python) "
            "and `make package-lambdas` builds the combiner's wheels for it; Lambda supports it until 2027.",
        )
        return function

    def _documents_environment(self, package: str) -> dict[str, str]:
        """Where the headlines of a bundle with the text expert are read (DocumentDB), and the CA bundles."""
        if self._docdb_secret is None:
            return ca_bundle_environment(self, package, ["SIGNAL_ENGINE_DATABASE_CA_FILE"])
        return {"SIGNAL_ENGINE_DOCUMENT_SECRET": self._docdb_secret.secret_arn,
                **ca_bundle_environment(self, package, ["SIGNAL_ENGINE_DATABASE_CA_FILE",
                                                        "SIGNAL_ENGINE_DOCUMENT_CA_FILE"])}

    def _build_combiner(
        self,
        vpc: ec2.IVpc,
        app_subnets: ec2.SubnetSelection,
        app_security_group: ec2.ISecurityGroup,
        models_read_policy: iam.IManagedPolicy,
        batch_jobs_policy: iam.IManagedPolicy,
        mysql_secret: secretsmanager.ISecret,
    ) -> lambda_.Function:
        """The combiner: gate, combiner, risk layer in NumPy; calls the experts; writes the audit log to MySQL. Its
        batch worker answers batch jobs (POST /signals/batch/jobs) past the API's timeout."""
        config = self._config
        network = (vpc, app_subnets, app_security_group)
        policies = [models_read_policy, batch_jobs_policy]
        worker_role = self._serving_role(
            "BatchWorkerRole", "signal-engine batch worker: model bundle, expert endpoints, audit log, batch jobs",
            policies, mysql_secret)
        # Invoked asynchronously once per job, never retried: the job records its own failure, and a job stopped
        # by the timeout shows as failed once the timeout has passed (GET /signals/batch/jobs/{job_id}).
        self.batch_worker = self._serving_function(
            "BatchWorker", description="signal-engine batch worker: POST /signals/batch/jobs",
            handler="combiner.handler.batch_worker", role=worker_role,
            timeout=Duration.seconds(BATCH_WORKER_TIMEOUT_S), network=network, mysql_secret=mysql_secret,
            environment={}, retry_attempts=0)
        skip_checkov(self.batch_worker, "CKV_AWS_116", "A batch job writes its own failure next to its request "
                     "(signal-batches/<job>/failure.json), and a job the timeout stopped is answered failed by GET "
                     "/signals/batch/jobs/{job_id}; a dead-letter queue would hold the same job id a second time.")
        role = self._serving_role(
            "CombinerRole", "signal-engine combiner: model bundle, expert endpoints, audit log", policies,
            mysql_secret)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="StartBatchJobs", actions=["lambda:InvokeFunction"], resources=[self.batch_worker.function_arn]
            )
        )
        # The combiner waits at most the deadline for the experts, then answers degraded; the rest is margin for
        # the bundle, the audit write and a cold start, well inside API Gateway's 29 s integration timeout.
        function = self._serving_function(
            "Combiner", description="signal-engine combiner: the Signal API", handler="combiner.handler.handler",
            role=role, timeout=Duration.seconds(min(28, config.expert_deadline_ms // 1000 + 10)), network=network,
            mysql_secret=mysql_secret,
            environment={"MAX_BATCH_REQUESTS": str(config.max_batch_requests),
                         "BATCH_WORKER_FUNCTION": self.batch_worker.function_name})
        skip_checkov(function, "CKV_AWS_116", "API Gateway invokes the combiner synchronously and returns its "
                     "error to the caller; a DLQ only receives failed asynchronous invocations.")
        return function

    # --- API --------------------------------------------------------------------------------------------------

    def _build_api(self) -> apigateway.RestApi:
        """The Signal API's routes (POST /signals, POST /signals/batch, GET /book, GET /models, GET /health): IAM
        authorization and a resource policy, validated JSON bodies, an API key and usage plan (throttle and quota),
        access logs, tracing and WAF."""
        config = self._config
        access_logs = logs.LogGroup(
            self, "ApiAccessLogs", retention=config.log_retention, removal_policy=config.log_removal_policy
        )
        api = apigateway.RestApi(
            self,
            "SignalApi",
            rest_api_name=f"{config.construct_id}-signals",
            description="signal-engine Signal API: POST /signals, POST /signals/batch, GET /book, GET /models, "
                        "GET /health",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            policy=self._api_resource_policy(),
            default_method_options=apigateway.MethodOptions(authorization_type=apigateway.AuthorizationType.IAM),
            # Execution logging needs the account-level CloudWatch role; it is kept when a stage is destroyed
            # because it is shared by every REST API of the account and region.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigateway.StageOptions(
                stage_name=config.name,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigateway.MethodLoggingLevel.INFO,
                data_trace_enabled=False,
                throttling_rate_limit=config.api_rate_limit,
                throttling_burst_limit=config.api_burst_limit,
                access_log_destination=apigateway.LogGroupLogDestination(access_logs),
                access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
        )
        skip_checkov(api.deployment_stage, "CKV_AWS_120", "Signals depend on the request body (POST, bars, "
                     "as_of) and on the latest bars; a stage cache would serve stale signals and bills per hour.")
        cloud_watch_role = api.node.find_child("CloudWatchRole")
        acknowledge(
            cloud_watch_role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level logging role needs exactly this AWS-maintained policy; it only lets API "
            "Gateway create and write its execution log groups.",
        )
        validator = api.add_request_validator(
            "BodyValidator", validate_request_body=True, validate_request_parameters=True
        )
        signal_model = api.add_model(
            "SignalRequestModel",
            content_type="application/json",
            model_name="SignalRequest",
            description="POST /signals body: symbol, timeframe, as_of, optional bars and position",
            schema=signal_request_schema(),
        )
        batch_model = api.add_model(
            "BatchRequestModel",
            content_type="application/json",
            model_name="BatchRequest",
            description="POST /signals/batch body: requests, each a POST /signals body",
            schema=batch_request_schema(),
        )
        # Every route of the Signal API (signal_engine.serving.api), each to the combiner; callers sign with SigV4
        # (AWS_IAM) and the API key only binds a caller to the usage plan's throttle and quota.
        signals = api.root.add_resource("signals")
        self._route(signals, "POST", validator, request_models={"application/json": signal_model})
        batch = signals.add_resource("batch")
        self._route(batch, "POST", validator, request_models={"application/json": batch_model})
        # Batch jobs: the same body, any size the API takes; the job answered later by the batch worker.
        jobs = batch.add_resource("jobs")
        self._route(jobs, "POST", validator, request_models={"application/json": batch_model})
        self._route(jobs.add_resource("{job_id}"), "GET", validator,
                    request_parameters={"method.request.path.job_id": True})
        # GET /book: the live books (positions, allocations, risk state, recent events).
        self._route(api.root.add_resource("book"), "GET", validator,
                    request_parameters={"method.request.querystring.name": False,
                                        "method.request.querystring.recent_bars": False})
        self._route(api.root.add_resource("models"), "GET", validator)
        self._route(api.root.add_resource("health"), "GET", validator)
        key = api.add_api_key("ClientKey", description=f"signal-engine {config.name}: first API client")
        plan = api.add_usage_plan(
            "UsagePlan",
            name=f"{config.construct_id}-signals",
            throttle=apigateway.ThrottleSettings(rate_limit=config.api_rate_limit, burst_limit=config.api_burst_limit),
            quota=apigateway.QuotaSettings(limit=config.api_quota_per_day, period=apigateway.Period.DAY),
            api_stages=[apigateway.UsagePlanPerApiStage(api=api, stage=api.deployment_stage)],
        )
        plan.add_api_key(key)
        self.api_key = key
        CfnOutput(self, "ApiKeyId", value=key.key_id,
                  description="aws apigateway get-api-key --include-value --api-key <this id>; send as x-api-key")
        self._add_waf(api)
        return api

    def _route(self, resource: apigateway.IResource, verb: str, validator: apigateway.IRequestValidator,
               **options: Any) -> apigateway.Method:
        method = resource.add_method(verb, apigateway.LambdaIntegration(self.combiner),
                                     authorization_type=apigateway.AuthorizationType.IAM, api_key_required=True,
                                     request_validator=validator, **options)
        acknowledge(
            method,
            "AwsSolutions-COG4",
            "Callers are trading programs in AWS accounts, not end users: the method uses IAM authorization "
            "(SigV4) and the API's resource policy names the allowed principals (api_allowed_principals).",
        )
        return method

    def _api_resource_policy(self) -> iam.PolicyDocument:
        """Allow execute-api:Invoke to the stage's api_allowed_principals and deny every other caller.

        The deny matters for callers in a listed account whose own IAM policies allow execute-api:Invoke on
        everything: with a listed role ARN, only that role of its account may call.
        ``execute-api:/*`` is API Gateway's shorthand for this API's ARN (the API cannot name its own id).
        """
        accounts: list[str] = []
        arns: list[str] = []
        principals: list[iam.IPrincipal] = []
        for entry in self._config.api_allowed_principals:
            if entry == THIS_ACCOUNT:
                principals.append(iam.AccountRootPrincipal())
                accounts.append(self.account)
            elif entry.isdigit():
                principals.append(iam.AccountPrincipal(entry))
                accounts.append(entry)
            else:
                principals.append(iam.ArnPrincipal(entry))
                if entry.endswith(":root"):
                    accounts.append(entry.split(":")[4])
                else:
                    arns.append(entry)
        unlisted: dict[str, Any] = {}
        if accounts:
            unlisted["StringNotEquals"] = {"aws:PrincipalAccount": accounts}
        if arns:
            unlisted["ArnNotLike"] = {"aws:PrincipalArn": arns}
        return iam.PolicyDocument(statements=[
            iam.PolicyStatement(sid="AllowListedCallers", principals=principals, actions=["execute-api:Invoke"],
                                resources=["execute-api:/*"]),
            iam.PolicyStatement(sid="DenyOtherCallers", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
                                actions=["execute-api:Invoke"], resources=["execute-api:/*"], conditions=unlisted),
        ])

    def _add_waf(self, api: apigateway.RestApi) -> None:
        """AWS managed common rules, a per-IP rate limit and AWS managed known bad inputs in front of the API stage."""

        def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
            )

        acl = wafv2.CfnWebACL(
            self,
            "ApiWebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility(f"{self._config.construct_id}-api"),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="CommonRules",
                    priority=0,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name="AWSManagedRulesCommonRuleSet"
                        )
                    ),
                    visibility_config=visibility("CommonRules"),
                ),
                wafv2.CfnWebACL.RuleProperty(
                    name="RatePerIp",
                    priority=1,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            aggregate_key_type="IP", limit=max(100, self._config.api_rate_limit * 300)
                        )
                    ),
                    visibility_config=visibility("RatePerIp"),
                ),
                # Request patterns known to be invalid or exploit attempts, Log4j lookups among them (CKV_AWS_192).
                wafv2.CfnWebACL.RuleProperty(
                    name="KnownBadInputs",
                    priority=2,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name="AWSManagedRulesKnownBadInputsRuleSet"
                        )
                    ),
                    visibility_config=visibility("KnownBadInputs"),
                ),
            ],
        )
        wafv2.CfnWebACLAssociation(
            self, "ApiWebAclAssociation", resource_arn=api.deployment_stage.stage_arn, web_acl_arn=acl.attr_arn
        )

    # --- monitoring -------------------------------------------------------------------------------------------

    def _add_monitoring(self) -> None:
        """Endpoint latency and errors, API 4xx/5xx and latency, combiner errors, signals served; alarms."""
        ops = self.dashboard
        five = Duration.minutes(5)
        api = self.api

        def endpoint_metric(name: str, statistic: str = "Sum") -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name=name,
                dimensions_map={"EndpointName": self.experts_endpoint, "VariantName": VARIANT},
                statistic=statistic,
                period=five,
            )

        server_errors = api.metric_server_error(period=five, statistic="Sum")
        combiner_errors = self.combiner.metric_errors(period=five)
        expert_errors = endpoint_metric("Invocation5XXErrors")
        api_alarm = ops.add_event_alarm(
            "Api5xxAlarm",
            metric=server_errors,
            threshold=5,
            description="The Signal API answered 5XX at least 5 times in 5 minutes",
        )
        combiner_alarm = ops.add_event_alarm(
            "CombinerErrorsAlarm",
            metric=combiner_errors,
            description="The combiner Lambda failed",
        )
        expert_alarm = ops.add_event_alarm(
            "ExpertErrorsAlarm",
            metric=expert_errors,
            threshold=5,
            description="The experts' endpoint answered 5XX at least 5 times in 5 minutes (signals degrade)",
        )
        latency = api.metric_latency(period=five, statistic="p90")
        latency_alarm = ops.add_alarm(
            "ApiLatencyAlarm",
            metric=latency,
            threshold=self._config.expert_deadline_ms + 1000,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            description="Signal API p90 latency above the expert deadline plus one second for 15 minutes",
        )
        def combiner_metric(name: str, label: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map={"service": METRICS_SERVICE},
                statistic="Sum",
                period=Duration.hours(1),
                label=label,
            )

        # The combiner's Powertools metrics: every request it handled, and every signal it served (audited).
        combiner_requests = combiner_metric("Requests", "Combiner requests")
        signals_served = combiner_metric("SignalsServed", "Signals served")
        ops.add_section(
            "Signal API",
            ops.graph(
                "Requests and signals served",
                [api.metric_count(period=Duration.hours(1)), combiner_requests, signals_served],
            ),
            ops.graph(
                "4XX and 5XX",
                [api.metric_client_error(period=five, statistic="Sum"), server_errors],
                thresholds=[api_alarm],
            ),
            ops.graph("Latency p90 (ms)", [latency], thresholds=[latency_alarm]),
        )
        ops.add_section(
            "Expert endpoint",
            ops.graph(
                "Model latency p90 (microseconds)", [endpoint_metric("ModelLatency", "p90")]
            ),
            ops.graph(
                "Invocations and 4XX",
                [endpoint_metric("Invocations"), endpoint_metric("Invocation4XXErrors")],
            ),
            ops.graph("5XX errors", [expert_errors], thresholds=[expert_alarm]),
        )
        ops.add_section(
            "Combiner",
            ops.graph("Errors", [combiner_errors], thresholds=[combiner_alarm]),
            ops.graph("Duration p90 (ms)", [self.combiner.metric_duration(period=five, statistic="p90")]),
            ops.graph("Throttles", [self.combiner.metric_throttles(period=five)]),
        )
        worker_errors = self.batch_worker.metric_errors(period=five)
        worker_alarm = ops.add_event_alarm(
            "BatchWorkerErrorsAlarm",
            metric=worker_errors,
            description="A batch job failed (GET /signals/batch/jobs/{job_id} says why)",
        )
        ops.add_section(
            "Batch jobs",
            ops.graph("Jobs and their signals", [combiner_metric("BatchJobs", "Batch jobs answered"),
                                                 combiner_metric("BatchJobSignals", "Signals of batch jobs")]),
            ops.graph("Worker errors", [worker_errors], thresholds=[worker_alarm]),
            ops.graph("Worker duration max (ms)",
                      [self.batch_worker.metric_duration(period=five, statistic="Maximum")]),
        )
        ops.add_alarm_status()
