"""The execution role of a Lambda function in the VPC, with its two AWS-managed policies acknowledged."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.constructs.nag import acknowledge

MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole": "only lets the function create its log streams and put log events",
    "AWSLambdaVPCAccessExecutionRole": (
        "only creates, describes and deletes the network interfaces that attach the function to the VPC; "
        "ec2:CreateNetworkInterface has no resource-level scoping to a function"
    ),
}


def lambda_vpc_role(scope: Construct, construct_id: str, *, description: str) -> iam.Role:
    """A role for Lambda functions in the VPC; callers add their own least-privilege statements."""
    role = iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=description,
        managed_policies=[
            iam.ManagedPolicy.from_aws_managed_policy_name(f"service-role/{name}") for name in MANAGED_POLICIES
        ],
    )
    for name, what in MANAGED_POLICIES.items():
        acknowledge(
            role,
            f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/{name}]",
            f"{name} is the AWS-maintained minimum for a Lambda function in a VPC: it {what}.",
        )
    return role


def acknowledge_tracing(role: iam.Role) -> None:
    """Acknowledge the Resource '*' that Lambda active tracing adds to the role's default policy."""
    acknowledge(
        role.node.find_child("DefaultPolicy"),
        "AwsSolutions-IAM5[Resource::*]",
        "xray:PutTraceSegments and xray:PutTelemetryRecords (added by Lambda active tracing) support no "
        "resource-level permissions, so X-Ray requires Resource '*'.",
    )



def grant_secret_read(role: iam.Role, sid: str, *secrets: secretsmanager.ISecret) -> None:
    """Let the function read ``secrets`` (GetSecretValue, DescribeSecret) in one statement named ``sid``; their keys
    come with :func:`grant_decrypt`."""
    role.add_to_policy(
        iam.PolicyStatement(
            sid=sid,
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resources=[secret.secret_arn for secret in secrets],
        )
    )


def grant_decrypt(role: iam.Role, *, environment_key: kms.IKey, secrets: Sequence[secretsmanager.ISecret]) -> None:
    """Let the function read its encrypted environment and the secrets it reads (through Secrets Manager only).

    Statements on the role, not key grants: the keys live in earlier stacks, whose key policies trust the
    account, and a grant on their policies would make those stacks depend on this one.
    """
    role.add_to_policy(
        iam.PolicyStatement(sid="EnvironmentKey", actions=["kms:Decrypt"], resources=[environment_key.key_arn])
    )
    secret_keys = [secret.encryption_key.key_arn for secret in secrets if secret.encryption_key is not None]
    if secret_keys:
        role.add_to_policy(
            iam.PolicyStatement(
                sid="SecretsKey",
                actions=["kms:Decrypt"],
                resources=sorted(set(secret_keys)),
                conditions={
                    "StringEquals": {"kms:ViaService": f"secretsmanager.{Stack.of(role).region}.amazonaws.com"}
                },
            )
        )
