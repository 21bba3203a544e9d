"""Storage stack: S3 buckets, RDS MySQL and DocumentDB, with secrets rotated in Secrets Manager."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

from aws_cdk import Acknowledgment, CfnElement, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_docdb as docdb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from signal_engine.serving.batch_jobs import JOBS_PREFIX
from stacks.config import MYSQL_MAJOR_VERSIONS, StageConfig
from stacks.constructs.nag import acknowledge, skip_checkov
from stacks.constructs.secure_bucket import SecureBucket

DATABASE_NAME = "signal_engine"
BATCH_JOBS_KEPT_DAYS = 30
ADMIN_USER = "signal_admin"
DOCDB_ENGINE_VERSION = "5.0.0"
DOCDB_PARAMETER_FAMILY = "docdb5.0"
# Construct id of the singleton function behind `cloudwatch_logs_retention` (aws_logs.LogRetention).
LOG_RETENTION_ID = "LogRetentionaae0aa3c5b4d4f87b02d85b201efdd8a"
# Object actions that write, so the policy also needs kms:GenerateDataKey.
WRITE_ACTIONS = frozenset({"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"})
DEFAULT_PORT_REASON = (
    "Default engine port kept on purpose: the database sits in isolated subnets and admits only the app and "
    "rotation security groups; a non-standard port adds no protection and breaks client defaults."
)


class StorageStack(Stack):
    """Buckets for raw payloads, datasets and model artefacts; RDS MySQL; DocumentDB."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        vpc: ec2.IVpc,
        database_subnets: ec2.SubnetSelection,
        app_subnets: ec2.SubnetSelection,
        app_security_group: ec2.ISecurityGroup,
        secrets_manager_endpoint: ec2.IInterfaceVpcEndpoint,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self._config = config

        self.data_key = kms.Key(
            self,
            "DataKey",
            description=f"signal-engine {config.name}: buckets, MySQL and DocumentDB storage",
            enable_key_rotation=True,
            pending_window=Duration.days(7 if config.key_removal_policy == RemovalPolicy.DESTROY else 30),
            removal_policy=config.key_removal_policy,
        )

        self._build_buckets()
        self.mysql = self._build_mysql(
            vpc=vpc,
            database_subnets=database_subnets,
            app_subnets=app_subnets,
            secrets_manager_endpoint=secrets_manager_endpoint,
        )
        self.mysql.connections.allow_default_port_from(app_security_group, "App workloads to MySQL")
        self.docdb = self._build_docdb(vpc=vpc, database_subnets=database_subnets)
        self.docdb.connections.allow_default_port_from(app_security_group, "App workloads to DocumentDB")
        self._acknowledge_log_retention()

        self.mysql_secret: secretsmanager.ISecret = _required(self.mysql.secret, "MySQL secret")
        self.docdb_secret: secretsmanager.ISecret = _required(self.docdb.secret, "DocumentDB secret")
        self.buckets: dict[str, s3.IBucket] = {
            "raw": self.raw_bucket,
            "datasets": self.datasets_bucket,
            "artifacts": self.artifacts_bucket,
        }

    def prefix_access_policy(
        self,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        prefix: str,
        actions: Sequence[str],
        description: str,
    ) -> iam.ManagedPolicy:
        """A managed policy for `actions` on the objects under `bucket/prefix/`, with the data key and listing.

        It lives here, beside the bucket, so its one wildcard (the objects under the prefix) is acknowledged with
        a stable finding id; roles in other stacks attach it with `role.add_managed_policy(...)`.
        """
        key_actions = ["kms:Decrypt"]
        if any(action in WRITE_ACTIONS for action in actions):
            key_actions.append("kms:GenerateDataKey")
        policy = iam.ManagedPolicy(
            self,
            construct_id,
            description=description,
            statements=[
                iam.PolicyStatement(
                    sid="Objects", actions=list(actions), resources=[bucket.arn_for_objects(f"{prefix}/*")]
                ),
                iam.PolicyStatement(
                    sid="List",
                    actions=["s3:ListBucket"],
                    resources=[bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}},
                ),
                iam.PolicyStatement(sid="BucketKey", actions=key_actions, resources=[self.data_key.key_arn]),
            ],
        )
        logical_id = self.get_logical_id(typing.cast(CfnElement, bucket.node.default_child))
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/{prefix}/*]",
            f"{', '.join(actions)} on the objects under {prefix}/ only: object keys are written at runtime "
            "(symbol, date, version), so the resource is the prefix, never the whole bucket.",
        )
        return policy

    def _build_buckets(self) -> None:
        """Create the access-log bucket and the three data buckets."""
        config = self._config
        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogsBucket",
            # S3 server access logging can only deliver to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireAccessLogs",
                    expiration=Duration.days(config.access_log_expire_after_days),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=config.bucket_removal_policy,
            auto_delete_objects=config.auto_delete_objects,
        )
        acknowledge(
            self.access_logs_bucket,
            "AwsSolutions-S1",
            "This bucket is the server access log target of the data buckets; logging it into itself would "
            "create a feedback loop of log records about log deliveries.",
        )
        skip_checkov(
            self.access_logs_bucket,
            "CKV_AWS_18",
            "This bucket is the server access log target of the data buckets; logging it into itself would "
            "create a feedback loop of log records about log deliveries.",
        )

        noncurrent = Duration.days(config.noncurrent_version_expire_after_days)
        raw_transitions = [
            s3.Transition(
                storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                transition_after=Duration.days(config.raw_infrequent_access_after_days),
            ),
            s3.Transition(
                storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                transition_after=Duration.days(config.raw_glacier_after_days),
            ),
        ]
        raw_expiration = (
            Duration.days(config.raw_expire_after_days) if config.raw_expire_after_days is not None else None
        )
        common: dict[str, Any] = {
            "encryption_key": self.data_key,
            "access_logs_bucket": self.access_logs_bucket,
            "removal_policy": config.bucket_removal_policy,
            "auto_delete_objects": config.auto_delete_objects,
        }
        self.raw_bucket = SecureBucket(
            self,
            "RawBucket",
            noncurrent_version_expire_after=noncurrent,
            lifecycle_rules=[
                s3.LifecycleRule(id="AgeRawPayloads", transitions=raw_transitions, expiration=raw_expiration)
            ],
            **common,
        )
        self.datasets_bucket = SecureBucket(
            self, "DatasetsBucket", noncurrent_version_expire_after=noncurrent, **common
        )
        # Earlier model versions stay restorable for longer than superseded payloads or datasets.
        self.artifacts_bucket = SecureBucket(
            self, "ArtifactsBucket", noncurrent_version_expire_after=Duration.days(365), **common
        )
        # Batch jobs' requests and answers are for their caller to fetch; every signal is in the audit log too.
        self.artifacts_bucket.add_lifecycle_rule(
            id="ExpireBatchJobs", prefix=f"{JOBS_PREFIX}/", expiration=Duration.days(BATCH_JOBS_KEPT_DAYS),
            noncurrent_version_expiration=Duration.days(1))

    def _build_mysql(
        self,
        *,
        vpc: ec2.IVpc,
        database_subnets: ec2.SubnetSelection,
        app_subnets: ec2.SubnetSelection,
        secrets_manager_endpoint: ec2.IInterfaceVpcEndpoint,
    ) -> rds.DatabaseInstance:
        """Create the MySQL instance (bars, stats, signals, positions, audit log) and rotate its secret."""
        config = self._config
        engine = rds.DatabaseInstanceEngine.mysql(version=config.mysql_engine)
        parameters = rds.ParameterGroup(
            self,
            "MySqlParameters",
            engine=engine,
            description=f"signal-engine {config.name}: TLS only, slow query log",
            parameters={
                "require_secure_transport": "1",
                "slow_query_log": "1",
                "long_query_time": "2",
                "log_output": "FILE",
            },
        )
        mysql = rds.DatabaseInstance(
            self,
            "MySql",
            engine=engine,
            instance_type=ec2.InstanceType(config.mysql_instance_type),
            vpc=vpc,
            vpc_subnets=database_subnets,
            credentials=rds.Credentials.from_generated_secret(ADMIN_USER, encryption_key=self.data_key),
            database_name=DATABASE_NAME,
            parameter_group=parameters,
            storage_type=rds.StorageType.GP3,
            allocated_storage=config.mysql_allocated_storage_gib,
            max_allocated_storage=config.mysql_max_allocated_storage_gib,
            storage_encrypted=True,
            storage_encryption_key=self.data_key,
            multi_az=config.mysql_multi_az,
            publicly_accessible=False,
            iam_authentication=True,
            ca_certificate=rds.CaCertificate.RDS_CA_RSA2048_G1,
            backup_retention=Duration.days(config.backup_retention_days),
            preferred_backup_window=config.backup_window,
            preferred_maintenance_window=config.maintenance_window,
            auto_minor_version_upgrade=True,
            copy_tags_to_snapshot=True,
            delete_automated_backups=not config.is_production,
            deletion_protection=config.deletion_protection,
            removal_policy=config.database_removal_policy,
            cloudwatch_logs_exports=["error", "slowquery"],
            cloudwatch_logs_retention=config.log_retention,
            monitoring_interval=(
                Duration.seconds(config.enhanced_monitoring_interval_seconds)
                if config.enhanced_monitoring_interval_seconds
                else None
            ),
        )
        acknowledge(mysql, "AwsSolutions-RDS11", DEFAULT_PORT_REASON)
        if config.mysql_engine_version in MYSQL_MAJOR_VERSIONS:
            # CDK's built-in CloudFormation validation (like cfn-lint's E3691) lists only full versions, but RDS
            # takes a major version and creates its current default minor (aws-cloudformation/cfn-lint#3849).
            Validations.of(mysql).acknowledge(Acknowledgment(
                id="CloudFormation-Validate::E9006",
                reason=f"EngineVersion {config.mysql_engine_version} is a major version on purpose: RDS creates "
                "the default minor and auto minor version upgrades keep it supported (stacks/config.py).",
            ))
        if not config.mysql_multi_az:
            single_az = (f"The {config.name} stage runs a single-AZ instance to halve its cost; prod is Multi-AZ "
                         "(stacks/config.py mysql_multi_az).")
            acknowledge(mysql, "AwsSolutions-RDS3", single_az)
            skip_checkov(mysql, "CKV_AWS_157", single_az)
        if not config.enhanced_monitoring_interval_seconds:
            skip_checkov(mysql, "CKV_AWS_118", f"The {config.name} stage leaves enhanced monitoring off (billed "
                         "per instance in CloudWatch Logs); prod samples every 60 s "
                         "(enhanced_monitoring_interval_seconds).")
        if not config.deletion_protection:
            acknowledge(
                mysql,
                "AwsSolutions-RDS10",
                f"The {config.name} stage is torn down with `cdk destroy`; prod enables deletion protection "
                "(stacks/config.py deletion_protection).",
            )
        if config.enhanced_monitoring_interval_seconds:
            monitoring_role = mysql.node.find_child("MonitoringRole")
            acknowledge(
                monitoring_role,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonRDSEnhancedMonitoringRole]",
                "RDS enhanced monitoring needs exactly this AWS-maintained service-role policy; it only lets "
                "the RDS monitoring agent write to the RDSOSMetrics log group.",
            )

        rotation_days = Duration.days(config.secret_rotation_days)
        mysql.add_rotation_single_user(
            automatically_after=rotation_days,
            vpc_subnets=app_subnets,
            endpoint=secrets_manager_endpoint,
        )
        return mysql

    def _build_docdb(self, *, vpc: ec2.IVpc, database_subnets: ec2.SubnetSelection) -> docdb.DatabaseCluster:
        """Create the DocumentDB cluster (news, reports) with TLS, audit logs and a rotated secret."""
        config = self._config
        parameters = docdb.ClusterParameterGroup(
            self,
            "DocDbParameters",
            family=DOCDB_PARAMETER_FAMILY,
            description=f"signal-engine {config.name}: TLS required, audit and profiler logs",
            parameters={
                "tls": "enabled",
                "audit_logs": "enabled",
                "profiler": "enabled",
                "profiler_threshold_ms": "500",
            },
        )
        cluster = docdb.DatabaseCluster(
            self,
            "DocDb",
            master_user=docdb.Login(username=ADMIN_USER, kms_key=self.data_key),
            engine_version=DOCDB_ENGINE_VERSION,
            instance_type=ec2.InstanceType(config.docdb_instance_type),
            instances=config.docdb_instances,
            vpc=vpc,
            vpc_subnets=database_subnets,
            parameter_group=parameters,
            storage_encrypted=True,
            kms_key=self.data_key,
            backup=docdb.BackupProps(
                retention=Duration.days(config.backup_retention_days),
                preferred_window=config.backup_window,
            ),
            preferred_maintenance_window=config.maintenance_window,
            copy_tags_to_snapshot=True,
            deletion_protection=config.deletion_protection,
            removal_policy=config.database_removal_policy,
            export_audit_logs_to_cloud_watch=True,
            export_profiler_logs_to_cloud_watch=True,
            cloud_watch_logs_retention=config.log_retention,
        )
        acknowledge(cluster, "AwsSolutions-DOC2", DEFAULT_PORT_REASON)
        acknowledge(
            cluster,
            "AwsSolutions-DOC3",
            "The credentials are generated into Secrets Manager by docdb.Login and passed as a "
            "{{resolve:secretsmanager}} dynamic reference; the rule cannot resolve the Fn::Join around the "
            "secret ARN and fails closed.",
        )
        for event in ("authenticate", "createIndex", "dropCollection"):
            acknowledge(
                cluster,
                f"AwsSolutions-DOC5[LogExport::{event}]",
                f"DocumentDB only accepts 'audit' and 'profiler' as CloudWatch log exports; with audit_logs "
                f"enabled in the parameter group the exported audit log already records {event} events.",
            )
        cluster.add_rotation_single_user(Duration.days(config.secret_rotation_days))
        return cluster

    def _acknowledge_log_retention(self) -> None:
        """Acknowledge findings on the CDK LogRetention function that the database log exports create."""
        log_retention = self.node.try_find_child(LOG_RETENTION_ID)
        if log_retention is None:
            return
        acknowledge(
            log_retention,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            "CDK's LogRetention function (sets retention on the RDS and DocumentDB log groups) only needs "
            "to write its own logs, which is exactly what AWSLambdaBasicExecutionRole grants.",
        )
        acknowledge(
            log_retention,
            "AwsSolutions-IAM5[Resource::*]",
            "logs:PutRetentionPolicy/DeleteRetentionPolicy on *: the log groups are created by RDS and "
            "DocumentDB at runtime, so their ARNs are unknown when CDK's LogRetention policy is written.",
        )


def _required(secret: secretsmanager.ISecret | None, what: str) -> secretsmanager.ISecret:
    """Narrow an optional secret; the databases above always generate one."""
    if secret is None:
        raise RuntimeError(f"{what} was not generated")
    return secret
