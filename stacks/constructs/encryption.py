"""The stage's operations key (CloudWatch Logs, Lambda environment variables) and the Aspect that applies it.

CloudWatch Logs encrypts a log group with a customer managed key only when the key policy lets the regional
Logs service principal use it, limited here to log groups of this account and region by the encryption context
that Logs sends (`kms:EncryptionContext:aws:logs:arn`).
"""

from __future__ import annotations

import jsii
from aws_cdk import ArnFormat, Duration, IAspect, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct, IConstruct

from stacks.config import StageConfig

LOGS_KEY_ACTIONS = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]


def operations_key(scope: Construct, construct_id: str, *, config: StageConfig) -> kms.Key:
    """A rotated key for the stage's log groups and Lambda environments, kept as long as the retained logs."""
    key = kms.Key(
        scope,
        construct_id,
        description=f"signal-engine {config.name}: CloudWatch Logs and Lambda environment variables",
        enable_key_rotation=True,
        pending_window=Duration.days(7 if config.key_removal_policy == RemovalPolicy.DESTROY else 30),
        removal_policy=config.key_removal_policy,
    )
    stack = Stack.of(scope)
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchLogs",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=LOGS_KEY_ACTIONS,
            resources=["*"],  # in a key policy, "*" is this key
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                        service="logs", resource="log-group", resource_name="*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                }
            },
        )
    )
    return key


@jsii.implements(IAspect)
class EncryptLogGroups:
    """Encrypt every log group of the scope that has no key yet with `key` (a stage's operations key).

    An Aspect, so that log groups built by constructs the stacks do not own (the training workflow's state
    machine logs) are covered too; CDK turns the key's ARN into a cross-stack reference where needed.
    """

    def __init__(self, key: kms.IKey) -> None:
        self.key = key

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, logs.CfnLogGroup) and node.kms_key_id is None:
            node.kms_key_id = self.key.key_arn
