"""Storage stack: buckets, RDS MySQL, DocumentDB, secrets and their rotation; dev vs prod differences."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from stacks.config import load_stage_config

pytestmark = pytest.mark.infra

DEV = load_stage_config("dev")
PROD = load_stage_config("prod")
BLOCK_ALL = {
    "BlockPublicAcls": True,
    "BlockPublicPolicy": True,
    "IgnorePublicAcls": True,
    "RestrictPublicBuckets": True,
}


def buckets(template: Template) -> dict[str, Any]:
    """All bucket resources by logical id."""
    return dict(template.find_resources("AWS::S3::Bucket"))


def data_buckets(template: Template) -> dict[str, Any]:
    """The raw, datasets and artifacts buckets (everything but the access-log bucket)."""
    return {k: v for k, v in buckets(template).items() if not k.startswith("AccessLogsBucket")}


def test_four_buckets(storage_template: Template) -> None:
    storage_template.resource_count_is("AWS::S3::Bucket", 4)
    assert len(data_buckets(storage_template)) == 3


def test_every_bucket_blocks_public_access_and_is_versioned(storage_template: Template) -> None:
    storage_template.all_resources_properties(
        "AWS::S3::Bucket",
        {"PublicAccessBlockConfiguration": BLOCK_ALL, "VersioningConfiguration": {"Status": "Enabled"}},
    )


def test_data_buckets_use_the_kms_key_with_bucket_keys(storage_template: Template) -> None:
    for bucket in data_buckets(storage_template).values():
        (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["BucketKeyEnabled"] is True
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]["Fn::GetAtt"][0].startswith("DataKey")
    storage_template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_data_buckets_log_to_the_access_log_bucket(storage_template: Template) -> None:
    for bucket in data_buckets(storage_template).values():
        target = bucket["Properties"]["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
        assert target.startswith("AccessLogsBucket")


def test_every_bucket_policy_denies_insecure_transport(storage_template: Template) -> None:
    policies = storage_template.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 4
    storage_template.all_resources_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            }
        },
    )


def test_raw_payloads_age_into_cheaper_storage(storage_template: Template) -> None:
    storage_template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Id": "AgeRawPayloads",
                                "Transitions": [
                                    {
                                        "StorageClass": "STANDARD_IA",
                                        "TransitionInDays": DEV.raw_infrequent_access_after_days,
                                    },
                                    {
                                        "StorageClass": "GLACIER_IR",
                                        "TransitionInDays": DEV.raw_glacier_after_days,
                                    },
                                ],
                            }
                        )
                    ]
                )
            }
        },
    )


def test_noncurrent_versions_expire(storage_template: Template) -> None:
    for bucket in data_buckets(storage_template).values():
        rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
        assert any("NoncurrentVersionExpiration" in rule for rule in rules)


def test_dev_buckets_are_emptied_and_deleted_with_the_stack(storage_template: Template) -> None:
    for bucket in buckets(storage_template).values():
        assert bucket["DeletionPolicy"] == "Delete"
    storage_template.resource_count_is("Custom::S3AutoDeleteObjects", 4)


def test_prod_buckets_are_retained(prod_storage_template: Template) -> None:
    for bucket in buckets(prod_storage_template).values():
        assert bucket["DeletionPolicy"] == "Retain"
    prod_storage_template.resource_count_is("Custom::S3AutoDeleteObjects", 0)


def test_mysql_engine_encryption_and_iam_auth(storage_template: Template) -> None:
    storage_template.has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "Engine": "mysql",
            # The major version: RDS picks the minor and upgrades it (no retired minor on a fresh deploy).
            "EngineVersion": "8.4",
            "AutoMinorVersionUpgrade": True,
            "StorageEncrypted": True,
            "KmsKeyId": Match.any_value(),
            "EnableIAMDatabaseAuthentication": True,
            "PubliclyAccessible": False,
            "EnableCloudwatchLogsExports": ["error", "slowquery"],
            "MasterUsername": "signal_admin",
            "MasterUserPassword": {
                "Fn::Join": [
                    "",
                    ["{{resolve:secretsmanager:", Match.any_value(), ":SecretString:password::}}"],
                ]
            },
        },
    )


def test_mysql_requires_tls(storage_template: Template) -> None:
    # "1" rather than "ON": the same to MySQL, and the value checkov's CKV2_AWS_69 recognises.
    storage_template.has_resource_properties(
        "AWS::RDS::DBParameterGroup",
        {"Family": "mysql8.4", "Parameters": Match.object_like({"require_secure_transport": "1"})},
    )


def test_dev_mysql_is_single_az_unprotected_and_destroyable(storage_template: Template) -> None:
    storage_template.has_resource(
        "AWS::RDS::DBInstance",
        {
            "Properties": Match.object_like(
                {
                    "MultiAZ": False,
                    "DeletionProtection": False,
                    "BackupRetentionPeriod": DEV.backup_retention_days,
                }
            ),
            "DeletionPolicy": "Delete",
        },
    )


def test_prod_mysql_is_multi_az_protected_and_snapshotted(prod_storage_template: Template) -> None:
    prod_storage_template.has_resource(
        "AWS::RDS::DBInstance",
        {
            "Properties": Match.object_like(
                {
                    "MultiAZ": True,
                    "DeletionProtection": True,
                    "BackupRetentionPeriod": PROD.backup_retention_days,
                    "MonitoringInterval": PROD.enhanced_monitoring_interval_seconds,
                }
            ),
            "DeletionPolicy": "Snapshot",
            "UpdateReplacePolicy": "Snapshot",
        },
    )


def test_docdb_parameter_group_enforces_tls_and_audit_logs(storage_template: Template) -> None:
    storage_template.has_resource_properties(
        "AWS::DocDB::DBClusterParameterGroup",
        {"Family": "docdb5.0", "Parameters": Match.object_like({"tls": "enabled", "audit_logs": "enabled"})},
    )


def test_docdb_cluster_encrypted_with_secret_credentials_and_log_exports(storage_template: Template) -> None:
    storage_template.has_resource_properties(
        "AWS::DocDB::DBCluster",
        {
            "StorageEncrypted": True,
            "KmsKeyId": Match.any_value(),
            "EnableCloudwatchLogsExports": Match.array_with(["audit"]),
            "MasterUsername": {
                "Fn::Join": ["", ["{{resolve:secretsmanager:", Match.any_value(), Match.any_value()]]
            },
            "DBClusterParameterGroupName": {"Ref": Match.string_like_regexp("^DocDbParameters")},
        },
    )


def test_docdb_protection_differs_between_stages(
    storage_template: Template, prod_storage_template: Template
) -> None:
    storage_template.has_resource(
        "AWS::DocDB::DBCluster",
        {"Properties": Match.object_like({"DeletionProtection": False}), "DeletionPolicy": "Delete"},
    )
    prod_storage_template.has_resource(
        "AWS::DocDB::DBCluster",
        {
            "Properties": Match.object_like(
                {"DeletionProtection": True, "BackupRetentionPeriod": PROD.backup_retention_days}
            ),
            "DeletionPolicy": "Snapshot",
        },
    )
    storage_template.resource_count_is("AWS::DocDB::DBInstance", DEV.docdb_instances)
    prod_storage_template.resource_count_is("AWS::DocDB::DBInstance", PROD.docdb_instances)


def test_both_secrets_rotate_on_schedule(storage_template: Template) -> None:
    storage_template.resource_count_is("AWS::SecretsManager::Secret", 2)
    storage_template.resource_count_is("AWS::SecretsManager::RotationSchedule", 2)
    storage_template.all_resources_properties(
        "AWS::SecretsManager::RotationSchedule",
        {"RotationRules": {"ScheduleExpression": f"rate({DEV.secret_rotation_days} days)"}},
    )
    storage_template.resource_count_is("AWS::Serverless::Application", 2)


def test_mysql_rotation_uses_the_secrets_manager_endpoint(storage_template: Template) -> None:
    storage_template.has_resource_properties(
        "AWS::Serverless::Application",
        {"Parameters": Match.object_like({"endpoint": {"Fn::Join": ["", Match.array_with(["https://"])]}})},
    )


@pytest.mark.parametrize(
    ("description", "port_attribute"),
    [
        ("App workloads to MySQL", ["MySql", "Endpoint.Port"]),
        ("App workloads to DocumentDB", ["DocDb", "Port"]),
    ],
)
def test_app_security_group_reaches_the_databases(
    storage_template: Template, description: str, port_attribute: list[str]
) -> None:
    resource, attribute = port_attribute
    port = {"Fn::GetAtt": [Match.string_like_regexp(f"^{resource}[0-9A-F]{{8}}$"), attribute]}
    storage_template.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress",
        {
            "Description": description,
            "IpProtocol": "tcp",
            "FromPort": port,
            "ToPort": port,
            "SourceSecurityGroupId": {
                "Fn::GetStackOutput": Match.object_like(
                    {"OutputName": Match.string_like_regexp("AppSecurityGroup")}
                )
            },
        },
    )
