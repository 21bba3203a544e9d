"""Network stack: subnets, NAT per stage, VPC endpoints, flow logs, security groups."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match, Template

from stacks.config import load_stage_config
from stacks.network import INTERFACE_ENDPOINTS

pytestmark = pytest.mark.infra

ENDPOINT_SERVICES = [
    "secretsmanager",
    "sagemaker.api",
    "sagemaker.runtime",
    "logs",
    "ecr.api",
    "ecr.dkr",
    "sts",
]


def service_name(suffix: str) -> dict[str, object]:
    """The ServiceName CDK renders for an AWS service in an env-agnostic stack."""
    return {"Fn::Join": ["", ["com.amazonaws.", {"Ref": "AWS::Region"}, f".{suffix}"]]}


def test_dev_has_one_nat_gateway_for_the_collectors(network_template: Template) -> None:
    network_template.resource_count_is("AWS::EC2::NatGateway", 1)
    network_template.resource_count_is("AWS::EC2::InternetGateway", 1)
    network_template.resource_count_is("AWS::EC2::Subnet", 6)
    network_template.all_resources_properties("AWS::EC2::Subnet", {"MapPublicIpOnLaunch": False})


def test_a_stage_without_collectors_can_drop_the_nat() -> None:
    config = load_stage_config("dev", {"nat_gateways": 0, "collectors_enabled": False})
    assert config.nat_gateways == 0
    with pytest.raises(ValueError, match="collectors_enabled needs nat_gateways >= 1"):
        load_stage_config("dev", {"nat_gateways": 0})


def test_prod_has_a_nat_gateway_for_app_egress(prod_network_template: Template) -> None:
    prod_network_template.resource_count_is("AWS::EC2::NatGateway", 1)
    prod_network_template.resource_count_is("AWS::EC2::Subnet", 6)


def test_subnet_groups_separate_app_and_data(network_template: Template) -> None:
    for group in ("App", "Data"):
        network_template.has_resource_properties(
            "AWS::EC2::Subnet",
            {"Tags": Match.array_with([{"Key": "aws-cdk:subnet-name", "Value": group}])},
        )


@pytest.mark.parametrize("service", ["s3", "dynamodb"])
def test_gateway_endpoints(network_template: Template, service: str) -> None:
    network_template.has_resource_properties(
        "AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway", "ServiceName": service_name(service)}
    )


@pytest.mark.parametrize("suffix", ENDPOINT_SERVICES)
def test_interface_endpoint_present_with_private_dns(network_template: Template, suffix: str) -> None:
    network_template.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {"VpcEndpointType": "Interface", "PrivateDnsEnabled": True, "ServiceName": service_name(suffix)},
    )


def test_interface_endpoint_count(network_template: Template) -> None:
    assert len(INTERFACE_ENDPOINTS) == len(ENDPOINT_SERVICES)
    endpoints = network_template.find_resources(
        "AWS::EC2::VPCEndpoint", {"Properties": {"VpcEndpointType": "Interface"}}
    )
    assert len(endpoints) == len(ENDPOINT_SERVICES)


def test_endpoints_use_one_az_in_dev_and_two_in_prod(
    network_template: Template, prod_network_template: Template
) -> None:
    for template, azs in ((network_template, 1), (prod_network_template, 2)):
        endpoints = template.find_resources(
            "AWS::EC2::VPCEndpoint", {"Properties": {"VpcEndpointType": "Interface"}}
        )
        assert {len(e["Properties"]["SubnetIds"]) for e in endpoints.values()} == {azs}


def test_endpoint_security_group_admits_https_from_the_vpc_only(network_template: Template) -> None:
    network_template.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {
            "GroupDescription": Match.string_like_regexp("Interface VPC endpoints"),
            "SecurityGroupIngress": [
                Match.object_like(
                    {"CidrIp": "10.20.0.0/16", "FromPort": 443, "ToPort": 443, "IpProtocol": "tcp"}
                )
            ],
        },
    )


def test_app_security_group_exists(network_template: Template) -> None:
    network_template.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {"GroupDescription": Match.string_like_regexp("^Collectors, training jobs")},
    )


def test_flow_logs_capture_all_traffic_to_cloudwatch(network_template: Template) -> None:
    network_template.has_resource_properties(
        "AWS::EC2::FlowLog",
        {"ResourceType": "VPC", "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"},
    )
    network_template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 14})


def test_prod_flow_logs_are_kept_longer_and_retained(prod_network_template: Template) -> None:
    prod_network_template.has_resource(
        "AWS::Logs::LogGroup", {"Properties": {"RetentionInDays": 90}, "DeletionPolicy": "Retain"}
    )


def test_default_security_group_is_restricted(network_template: Template) -> None:
    network_template.resource_count_is("Custom::VpcRestrictDefaultSG", 1)
