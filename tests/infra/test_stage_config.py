"""Stage configuration of the collectors, training and serving settings: bad values name the key and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from stacks.config import COLLECTORS, load_stage_config


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_both_stages_schedule_every_collector(stage: str) -> None:
    config = load_stage_config(stage)
    assert set(config.collector_schedules) == set(COLLECTORS)
    assert config.collectors_enabled and config.nat_gateways >= 1


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_api_lets_in_the_deploying_account_by_default(stage: str) -> None:
    assert load_stage_config(stage).api_allowed_principals == ("this-account",)
    listed = ["123456789012", "arn:aws:iam::123456789012:role/trader", "arn:aws:iam::123456789012:root"]
    assert load_stage_config(stage, {"api_allowed_principals": listed}).api_allowed_principals == tuple(listed)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"collector_schedules": {"yahoo_bars": "cron(0 22 ? * MON-FRI *)"}}, "missing: .*nasdaq_bars"),
        (
            {"collector_schedules": {**load_stage_config("dev").collector_schedules, "yahoo_crypto": "rate(1 hour)"}},
            "unknown: .*yahoo_crypto",
        ),
        (
            {"collector_schedules": {**load_stage_config("dev").collector_schedules, "yahoo_news": "hourly"}},
            "collector_schedules.yahoo_news must be an EventBridge expression",
        ),
        ({"collector_schedules": {"yahoo_bars": 5}}, "collector_schedules must be dict"),
        ({"train_schedule": "weekly"}, "train_schedule must be a cron"),
        ({"bars_export_schedule": "daily"}, "bars_export_schedule must be an EventBridge expression"),
        ({"collector_symbols": " , "}, "collector_symbols needs at least one symbol"),
        ({"collector_retry_attempts": 3}, "collector_retry_attempts must be 0, 1 or 2"),
        ({"collector_timeout_seconds": 901}, "collector_timeout_seconds must be between 1 and 900"),
        ({"collector_reserved_concurrency": -1}, "collector_reserved_concurrency must be 0"),
        ({"collector_reserved_concurrency": 82}, "reserves 902 executions .* Lambda keeps 100 unreserved"),
        ({"mysql_engine_version": "8.4.99"}, "mysql_engine_version '8.4.99' is neither a major version"),
        ({"mysql_engine_version": "9.0"}, "mysql_engine_version '9.0' is neither"),
        ({"training_instance_type": "ml.m5.xlarge"}, "training_instance_type 'ml.m5.xlarge' has no NVIDIA GPU"),
        ({"expert_instance_type": "m5.large"}, "expert_instance_type must be a SageMaker instance type"),
        ({"training_profile": "huge"}, "training_profile must be 'quick' or 'full'"),
        ({"api_allowed_principals": []}, "api_allowed_principals needs at least one caller"),
        ({"api_allowed_principals": "123456789012"}, r"api_allowed_principals must be tuple\[str, ...\]"),
        ({"api_allowed_principals": ["arn:aws:iam::12:role/x"]}, "entry 'arn:aws:iam::12:role/x' is not a 12-digit"),
        ({"api_allowed_principals": ["*"]}, "entry '\\*' is not a 12-digit account id"),
        ({"expert_endpoint_mode": "spot"}, "expert_endpoint_mode must be 'realtime' or 'serverless'"),
        ({"expert_endpoint_mode": "serverless", "expert_autoscaling": True}, "expert_autoscaling applies to realtime"),
        ({"expert_serverless_memory_mb": 1500}, "expert_serverless_memory_mb must be 1024, 2048"),
        ({"expert_serverless_max_concurrency": 0}, "expert_serverless_max_concurrency must be between 1 and 200"),
        ({"expert_min_instances": 3, "expert_max_instances": 2}, "expert_min_instances <= expert_max_instances"),
        ({"expert_deadline_ms": 30000}, "expert_deadline_ms must be between 100 and 25000"),
        ({"api_rate_limit": 20, "api_burst_limit": 10}, "api_rate_limit <= api_burst_limit"),
        ({"api_quota_per_day": 0}, "api_quota_per_day must be at least 1"),
        ({"max_batch_requests": 0}, "max_batch_requests must be between 1 and 1000"),
        ({"max_batch_requests": 1001}, "max_batch_requests must be between 1 and 1000"),
    ],
)
def test_bad_settings_are_rejected_with_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_stage_config("dev", overrides)


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_defaults_deploy_on_a_fresh_account(stage: str) -> None:
    config = load_stage_config(stage)
    # No Lambda concurrency reserved: a reservation needs a raised account quota (README, Deploying to AWS).
    assert config.collector_reserved_concurrency == 0
    # MySQL by major version only, so RDS creates a supported minor and keeps upgrading it.
    assert config.mysql_engine_version == "8.4"
    assert (config.mysql_engine.mysql_full_version, config.mysql_engine.mysql_major_version) == ("8.4", "8.4")


def test_a_pinned_mysql_minor_is_still_possible() -> None:
    assert load_stage_config("dev", {"mysql_engine_version": "8.4.10"}).mysql_engine.mysql_full_version == "8.4.10"


def test_symbols_are_normalised() -> None:
    assert load_stage_config("dev", {"collector_symbols": " spy, qqq ,"}).symbols == ("SPY", "QQQ")


def test_schedules_are_copied_not_shared() -> None:
    schedules = dict(load_stage_config("dev").collector_schedules)
    config = load_stage_config("dev", {"collector_schedules": schedules})
    schedules["yahoo_bars"] = "rate(1 minute)"
    assert config.collector_schedules["yahoo_bars"] != "rate(1 minute)"
