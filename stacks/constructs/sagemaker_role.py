"""An execution role for SageMaker jobs or endpoints in the VPC, scoped to what they touch."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.constructs.nag import acknowledge, skip_checkov

# What SageMaker does in the customer VPC on the role's behalf (ENIs for the containers); the Describe* calls
# and CreateNetworkInterface take no resource-level scoping.
VPC_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
]

LOG_SUFFIXES = ("/*", "/*:log-stream:*")


def sagemaker_role(
    scope: Construct,
    construct_id: str,
    *,
    description: str,
    log_groups: Sequence[str],
) -> iam.Role:
    """A role SageMaker assumes: write logs under `log_groups` (e.g. /aws/sagemaker/TrainingJobs), publish
    metrics, attach to the VPC. Image pulls and bucket access are granted by whoever uses it (the workflow)."""
    stack = Stack.of(scope)
    role = iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
        description=description,
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="Logs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[
                stack.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=f"{group}{suffix}",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
                for group in log_groups
                for suffix in LOG_SUFFIXES
            ],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="Metrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "SignalEngine"]}},
        )
    )
    role.add_to_policy(iam.PolicyStatement(sid="Vpc", actions=VPC_ACTIONS, resources=["*"]))
    policy = role.node.find_child("DefaultPolicy")
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::*]",
        "ecr:GetAuthorizationToken, cloudwatch:PutMetricData (limited by a namespace condition) and the VPC "
        "network-interface actions SageMaker performs for the role accept no resource ARN; AWS documents '*'.",
    )
    for check_id in ("CKV_AWS_111", "CKV_AWS_109"):
        skip_checkov(
            policy,
            check_id,
            "The Vpc statement: SageMaker creates, deletes and shares (CreateNetworkInterfacePermission) the "
            "ENIs of jobs and endpoints in the VPC on the role's behalf, in subnets chosen per job; AWS documents "
            "these actions with Resource '*' for SageMaker VPC access.",
        )
    for group in log_groups:
        for suffix in LOG_SUFFIXES:
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
                f"log-group:{group}{suffix}]",
                f"SageMaker names its log groups and streams under {group}/ per job or endpoint at runtime, so "
                "the role may write only below that prefix.",
            )
    return role

