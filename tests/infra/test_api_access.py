"""Who may call the Signal API: IAM authorization (SigV4) on every method, and the API's resource policy evaluated by
the same IAM simulator as tests/infra/test_access.py; the README's signed client signs for the synthesized API."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk.assertions import Template

from tests.infra.access import ACCOUNT, PARTITION, REGION, Resolver, simulate
from tests.infra.conftest import TRADER_ROLE, SynthesizedApp

README = Path(__file__).resolve().parents[2] / "README.md"
INVOKE = "execute-api:Invoke"


Serving = tuple[Resolver, str, dict[str, Any]]


def serving(app: SynthesizedApp, stage: str) -> Serving:
    """The stage's resolver, the serving stack's name and template."""
    stacks = [child for child in app.stages[stage].node.children if isinstance(child, Stack)]
    templates = {stack.stack_name: dict(Template.from_stack(stack).to_json()) for stack in stacks}
    name = next(stack.stack_name for stack in stacks if stack.stack_name.endswith("-Serving"))
    return Resolver(templates), name, templates[name]


@pytest.fixture(scope="module")
def served(synthesized_app: SynthesizedApp) -> dict[str, Serving]:
    """serving() of each stage, read once for the module's tests."""
    return {stage: serving(synthesized_app, stage) for stage in ("dev", "prod")}


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_every_method_uses_iam_authorization(served: dict[str, Serving], stage: str) -> None:
    _, _, template = served[stage]
    methods = of_type(template, "AWS::ApiGateway::Method")
    assert methods
    assert {name: m["Properties"].get("AuthorizationType") for name, m in methods.items()
            if m["Properties"]["HttpMethod"] != "OPTIONS"} == {name: "AWS_IAM" for name in methods}
    # The API key stays, for the usage plan's throttle and quota only.
    assert all(m["Properties"].get("ApiKeyRequired") for m in methods.values())


def api_arn(resolver: Resolver, stack: str, template: dict[str, Any], route: str = "POST/signals") -> tuple[str, str]:
    """The API's ARN prefix and the invoke ARN of ``route`` (default POST /signals) on its stage."""
    (api,) = of_type(template, "AWS::ApiGateway::RestApi")
    (stage,) = of_type(template, "AWS::ApiGateway::Stage").values()
    api_id = resolver.ref(stack, api)
    prefix = f"arn:{PARTITION}:execute-api:{REGION}:{ACCOUNT}:{api_id}"
    return prefix, f"{prefix}/{resolver.resolve(stack, stage['Properties']['StageName'])}/{route}"


ROUTES = ("POST/signals", "POST/signals/batch", "POST/signals/batch/jobs", "GET/signals/batch/jobs/0123abcd",
          "GET/book", "GET/models", "GET/health")


def simulations_of(served: Serving, callers: list[str | None], route: str = "POST/signals") -> list[dict[str, Any]]:
    """iam-simulate's inputs for each caller (a role ARN, or None for an unsigned request) on ``route``.

    Each role's own identity policy allows execute-api:Invoke on everything, so the API's resource policy alone
    decides who is let in. ``execute-api:/`` in the policy is API Gateway's shorthand for the API's own ARN.
    """
    resolver, stack, template = served
    (api,) = of_type(template, "AWS::ApiGateway::RestApi").values()
    prefix, target = api_arn(resolver, stack, template, route)
    policy = json.loads(json.dumps(resolver.resolve(stack, api["Properties"]["Policy"]))
                        .replace('"execute-api:/', f'"{prefix}/'))
    allow_all = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": INVOKE, "Resource": "*"}]}
    simulations = []
    for caller in callers:
        if caller is None:
            request = {"principal": {"type": "Anonymous"}, "action": INVOKE,
                       "resource": {"resource": target, "accountId": ACCOUNT}, "contextVariables": {}}
            simulations.append({"identityPolicies": [], "serviceControlPolicies": [], "resourceControlPolicies": [],
                                "resourcePolicy": policy, "request": request})
            continue
        account, name = caller.split(":")[4], caller.rsplit("/", 1)[1]
        request = {"principal": f"arn:{PARTITION}:sts::{account}:assumed-role/{name}/session", "action": INVOKE,
                   "resource": {"resource": target, "accountId": ACCOUNT},
                   "contextVariables": {"aws:PrincipalArn": caller, "aws:PrincipalAccount": account}}
        simulations.append({"identityPolicies": [{"name": "invoke", "policy": allow_all}],
                            "serviceControlPolicies": [], "resourceControlPolicies": [],
                            "resourcePolicy": policy, "request": request})
    return simulations


OWN_ROLE = f"arn:{PARTITION}:iam::{ACCOUNT}:role/trading-program"
STRANGER = f"arn:{PARTITION}:iam::777788889999:role/trading-program"
TRADER_NEIGHBOUR = f"arn:{PARTITION}:iam::444455556666:role/other-program"
# Who asks each stage's API, on every route: a role of the deploying account, the listed trader role (prod), a
# role of the trader's account that is not listed, a role of another account, and an unsigned request.
CALLERS: dict[str, list[str | None]] = {"dev": [OWN_ROLE, STRANGER, None],
                                        "prod": [OWN_ROLE, TRADER_ROLE, TRADER_NEIGHBOUR, STRANGER, None]}


@pytest.fixture(scope="module")
def decisions(served: dict[str, Serving]) -> dict[tuple[str, str], dict[str | None, str]]:
    """iam-simulate's decision for each caller of CALLERS on each (stage, route), all in one node process."""
    cases = [(stage, route) for stage in CALLERS for route in ROUTES]
    simulations = [simulations_of(served[stage], CALLERS[stage], route) for stage, route in cases]
    results = simulate([simulation for group in simulations for simulation in group])
    assert len(results) == sum(map(len, simulations))
    answers = iter(str(result["result"]) for result in results)
    return {case: {caller: next(answers) for caller in CALLERS[case[0]]} for case in cases}


@pytest.mark.parametrize("route", ROUTES)
def test_dev_lets_in_the_deploying_account_only(decisions: dict[tuple[str, str], dict[str | None, str]],
                                                route: str) -> None:
    assert decisions["dev", route] == {OWN_ROLE: "Allowed", STRANGER: "ExplicitlyDenied", None: "ExplicitlyDenied"}


@pytest.mark.parametrize("route", ROUTES)
def test_prod_lets_in_the_listed_role_and_no_other_of_its_account(
        decisions: dict[tuple[str, str], dict[str | None, str]], route: str) -> None:
    assert decisions["prod", route] == {OWN_ROLE: "Allowed", TRADER_ROLE: "Allowed",
                                        TRADER_NEIGHBOUR: "ExplicitlyDenied", STRANGER: "ExplicitlyDenied",
                                        None: "ExplicitlyDenied"}


def readme_client() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- signed-client:begin -->\n```python\n(.*?)```\n<!-- signed-client:end -->", text, re.S)
    assert match, "README.md lost its signed client example (between the signed-client markers)"
    return match.group(1)


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_readme_client_signs_for_the_synthesized_api(served: dict[str, Serving], stage: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    resolver, stack, template = served[stage]
    endpoint = next(resolver.resolve(stack, output["Value"]) for name, output in template["Outputs"].items()
                    if name.startswith("SignalApiEndpoint"))
    assert re.fullmatch(rf"https://\w+\.execute-api\.{REGION}\.amazonaws\.com/{stage}/", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    sent: list[urllib.request.Request] = []

    class Answer:
        def __enter__(self) -> Answer:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def read(self, *_: Any) -> bytes:
            return b'{"signal": 1}'

    def urlopen(request: urllib.request.Request, timeout: float) -> Answer:
        sent.append(request)
        return Answer()

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    namespace: dict[str, Any] = {}
    exec(compile(readme_client(), "README.md", "exec"), namespace)
    answer = namespace["call_signal_api"](endpoint + "signals", {"symbol": "SPX"}, api_key="k", region=REGION)
    assert answer == {"signal": 1}
    (request,) = sent
    headers = {k.lower(): v for k, v in request.header_items()}
    assert request.full_url == endpoint + "signals" and request.get_method() == "POST"
    authorization = headers["authorization"]
    credential = re.search(r"Credential=([^,]+)", authorization)
    assert credential and re.fullmatch(rf"AKIDEXAMPLE/\d{{8}}/{REGION}/execute-api/aws4_request", credential.group(1))
    signed = re.search(r"SignedHeaders=([^,]+)", authorization)
    assert signed and {"host", "x-amz-date", "x-api-key", "content-type"} <= set(signed.group(1).split(";"))
    assert authorization.startswith("AWS4-HMAC-SHA256 ") and headers["x-api-key"] == "k"
