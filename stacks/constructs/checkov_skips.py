"""checkov skips on the resources aws-cdk-lib creates by itself (custom resource handlers, LogRetention).

Those functions are created inside aws-cdk-lib (bucket auto-delete, the default security group's lockdown, log
retention of the database log exports): CloudFormation invokes them synchronously during a deployment, so the
checks written for application functions (concurrency limit, DLQ, VPC) do not apply; the project cannot set
those properties on them either.
"""

from __future__ import annotations

import jsii
from aws_cdk import CfnResource, IAspect
from constructs import IConstruct

from stacks.constructs.nag import skip_checkov
from stacks.storage import LOG_RETENTION_ID

FUNCTION_SKIPS = {
    "CKV_AWS_115": "CloudFormation invokes this aws-cdk-lib handler once per resource change during a "
    "deployment; a reserved concurrency would only take from the account's pool.",
    "CKV_AWS_116": "CloudFormation invokes this aws-cdk-lib handler synchronously and records a failure as a "
    "failed stack event and rollback; a DLQ applies to asynchronous invocations only.",
    "CKV_AWS_117": "This aws-cdk-lib handler only calls AWS control-plane APIs (S3, EC2, CloudWatch Logs) during "
    "a deployment and touches no data in the VPC; aws-cdk-lib offers no VPC setting for it.",
}
LOG_RETENTION_POLICY_SKIPS = {
    "CKV_AWS_111": "logs:PutRetentionPolicy/DeleteRetentionPolicy on *: RDS and DocumentDB create their log "
    "groups at runtime, so their ARNs are unknown when CDK's LogRetention policy is written.",
}


def cdk_internal_owner(node: IConstruct) -> str | None:
    """The aws-cdk-lib construct (a CustomResourceProvider or LogRetention) that created `node`, if any."""
    for scope in node.node.scopes:
        name = scope.node.id
        if name == LOG_RETENTION_ID or (name.startswith("Custom::") and name.endswith("CustomResourceProvider")):
            return name
    return None


@jsii.implements(IAspect)
class SkipCheckovOnCdkInternals:
    """Skip the application-function checks on aws-cdk-lib's own handlers, each with its reason."""

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, CfnResource) or cdk_internal_owner(node) is None:
            return
        if node.cfn_resource_type == "AWS::Lambda::Function":
            skips = FUNCTION_SKIPS
        elif node.cfn_resource_type == "AWS::IAM::Policy" and cdk_internal_owner(node) == LOG_RETENTION_ID:
            skips = LOG_RETENTION_POLICY_SKIPS
        else:
            return
        for check_id, reason in skips.items():
            skip_checkov(node, check_id, reason)
