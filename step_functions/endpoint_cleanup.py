"""Cleanup on stack deletion: the SageMaker endpoint, endpoint configs and models the training workflow creates
at run time are unknown to CloudFormation, so ``cdk destroy`` would leave them (and the endpoint's bill) behind.

``EndpointCleanup`` is a custom resource (``aws_cdk.custom_resources.Provider``) whose Delete runs
``lambda_src/workflow_cleanup/handler.py``: it deletes the endpoint by name and every endpoint config and model
named ``signal-engine-*`` that carries the tag ``signal-engine:endpoint=<endpoint name>`` (the workflow tags what
it creates so), and ignores what is already gone.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.constructs.nag import acknowledge, skip_checkov

HANDLER_DIR = Path(__file__).resolve().parents[1] / "lambda_src" / "workflow_cleanup"
NAME_PREFIX = "signal-engine-"
TAG_KEY = "signal-engine:endpoint"
RUNTIME = lambda_.Runtime.PYTHON_3_12


CHECKOV_SKIPS = {
    "CKV_AWS_115": "Runs once, when the stack is deleted; a reserved concurrency would only take from the "
    "account's pool (its quota is often small).",
    "CKV_AWS_116": "Invoked by CloudFormation through the Provider framework, which reports a failed delete as a "
    "failed stack event; a dead-letter queue would hold an event nobody replays.",
    "CKV_AWS_117": "Calls only the SageMaker control-plane API when the stack is deleted and touches no data in "
    "the VPC; outside it, it needs no NAT gateway or interface endpoint.",
}


class EndpointCleanup(Construct):
    """Deletes the workflow's endpoint, endpoint configs and models when the stack is deleted."""

    def __init__(self, scope: Construct, construct_id: str, *, endpoint_name: str,
                 name_prefix: str = NAME_PREFIX) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        arn = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}"
        self._arn, self._prefix = arn, name_prefix
        self.function = lambda_.Function(
            self, "Handler", runtime=RUNTIME, handler="handler.on_event",
            code=lambda_.Code.from_asset(str(HANDLER_DIR), exclude=["__pycache__", "*.pyc"]),
            timeout=Duration.minutes(5), description="Deletes the training workflow's SageMaker endpoint, "
            "endpoint configs and models on stack deletion",
            log_group=logs.LogGroup(self, "HandlerLogs", retention=logs.RetentionDays.ONE_MONTH,
                                    removal_policy=RemovalPolicy.DESTROY),
        )
        # SageMaker ARNs spell resource names in lower case.
        statements = {
            ("sagemaker:DescribeEndpoint", "sagemaker:DeleteEndpoint"): [f"{arn}:endpoint/{endpoint_name.lower()}"],
            ("sagemaker:ListTags",): [f"{arn}:model/{name_prefix}*", f"{arn}:endpoint-config/{name_prefix}*"],
            ("sagemaker:DeleteEndpointConfig",): [f"{arn}:endpoint-config/{name_prefix}*"],
            ("sagemaker:DeleteModel",): [f"{arn}:model/{name_prefix}*"],
            ("sagemaker:ListModels", "sagemaker:ListEndpointConfigs"): ["*"],
        }
        for actions, resources in statements.items():
            self.function.add_to_role_policy(iam.PolicyStatement(actions=list(actions), resources=resources))
        self.provider = cr.Provider(self, "Provider", on_event_handler=self.function, log_group=logs.LogGroup(
            self, "ProviderLogs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY))
        self.resource = CustomResource(
            self, "Resource", service_token=self.provider.service_token, resource_type="Custom::WorkflowCleanup",
            properties={"EndpointName": endpoint_name, "NamePrefix": name_prefix, "TagKey": TAG_KEY,
                        "TagValue": endpoint_name})
        self._acknowledge()

    def _acknowledge(self) -> None:
        framework = self.provider.node.find_child("framework-onEvent")
        for function in (self.function, framework):
            for check_id, reason in CHECKOV_SKIPS.items():
                skip_checkov(function, check_id, reason)
            acknowledge(function, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                        "AWSLambdaBasicExecutionRole]", "AWSLambdaBasicExecutionRole only lets the cleanup "
                        "functions write their own logs.")
            acknowledge(function, "AwsSolutions-L1", "The cleanup runs once, on stack deletion, with boto3 only; "
                        "the CDK Provider framework picks its own Node.js runtime.")
        assert self.function.role is not None
        acknowledge(self.function.role.node.find_child("DefaultPolicy"), "AwsSolutions-IAM5[Resource::*]",
                    "sagemaker:ListModels and sagemaker:ListEndpointConfigs have no resource-level permissions.")
        from stacks.constructs.nag import nag_text  # the finding ids as cdk-nag prints them

        stack, arn = Stack.of(self), self._arn
        for kind in ("model", "endpoint-config"):
            acknowledge(self.function, f"AwsSolutions-IAM5[Resource::{nag_text(stack, f'{arn}:{kind}/')}"
                        f"{self._prefix}*]", f"the workflow names each {kind} signal-engine-<run id> at run time; "
                        "the handler deletes only those tagged with this stage's endpoint.")
        acknowledge(self.provider, f"AwsSolutions-IAM5[Resource::{nag_text(stack, self.function.function_arn)}:*]",
                    "the CDK Provider framework may invoke every version of the cleanup handler, nothing else.")
        skip_checkov(framework, "CKV_AWS_173", "The Provider framework's only environment variable is the ARN of "
                     "the cleanup function it calls: no secret to encrypt, and CDK sets no key on it.")
