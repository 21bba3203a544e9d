"""Access checks over synthesized CloudFormation templates, evaluated by a real IAM policy simulator.

- ``Resolver`` turns the templates' intrinsics (Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select, Fn::Split,
  Fn::ImportValue, Fn::GetStackOutput, Fn::FindInMap, Fn::GetAZs, Fn::If) into concrete values for one account and
  region, naming each resource the way CloudFormation would (``<stack>-<logical id>`` unless the template names it).
- ``Access`` collects a role's identity policies (inline, ``AWS::IAM::Policy``, customer and AWS managed policies)
  and the resource policies (bucket, topic, queue, KMS key, secret), and builds ``Request``s with their context.
- ``simulate`` evaluates the requests with ``@cloud-copilot/iam-simulate`` (npm; ``tests/infra/iam_simulate.cjs``),
  which implements AWS's evaluation logic: explicit denies, every condition operator, KMS key policies.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SIMULATOR = Path(__file__).with_name("iam_simulate.cjs")
ACCOUNT = "111122223333"
REGION = "eu-west-1"
PARTITION = "aws"
ALLOWED = "Allowed"

Template = dict[str, Any]


class ResolveError(ValueError):
    """An intrinsic the resolver cannot turn into a value (named with its stack and logical id)."""


@cache
def aws_managed_policy(name: str) -> dict[str, Any]:
    """The document of an AWS managed policy, from the copy moto ships (AWS's published documents)."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    policies = json.loads(aws_managed_policies_data)
    if name not in policies:
        raise ResolveError(f"AWS managed policy {name!r} is not in moto's copy of AWS's policies")
    document: dict[str, Any] = policies[name]["Document"]
    return document


class Resolver:
    """Concrete values of a stage's templates for ``account`` and ``region``."""

    def __init__(self, templates: Mapping[str, Template], account: str = ACCOUNT, region: str = REGION) -> None:
        self.templates = dict(templates)
        self.account, self.region = account, region

    # -- names ------------------------------------------------------------------------------------------------

    def resource(self, stack: str, logical: str) -> dict[str, Any]:
        try:
            resource: dict[str, Any] = self.templates[stack]["Resources"][logical]
        except KeyError:
            raise ResolveError(f"{stack}: no resource {logical!r}") from None
        return resource

    def _name(self, stack: str, logical: str, prop: str | None, limit: int = 64, lower: bool = False) -> str:
        properties = self.resource(stack, logical).get("Properties", {})
        if prop and prop in properties:
            return str(self.resolve(stack, properties[prop]))
        name = f"{stack}-{logical}"[:limit]
        return name.lower() if lower else name

    def ref(self, stack: str, logical: str) -> Any:
        if logical.startswith("AWS::"):
            return self.pseudo(stack, logical)
        template = self.templates[stack]
        if logical in template.get("Parameters", {}):
            parameter = template["Parameters"][logical]
            if "Default" not in parameter:
                raise ResolveError(f"{stack}: parameter {logical} has no default")
            return parameter["Default"]
        kind = self.resource(stack, logical)["Type"]
        a, r, p = self.account, self.region, PARTITION
        match kind:
            case "AWS::IAM::Role":
                return self._name(stack, logical, "RoleName")
            case "AWS::IAM::ManagedPolicy":
                return f"arn:{p}:iam::{a}:policy/{self._name(stack, logical, 'ManagedPolicyName', 128)}"
            case "AWS::S3::Bucket":
                return self._name(stack, logical, "BucketName", 63, lower=True)
            case "AWS::KMS::Key":
                return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{stack}/{logical}"))
            case "AWS::SNS::Topic":
                return f"arn:{p}:sns:{r}:{a}:{self._name(stack, logical, 'TopicName', 256)}"
            case "AWS::SQS::Queue":
                return f"https://sqs.{r}.amazonaws.com/{a}/{self._name(stack, logical, 'QueueName', 80)}"
            case "AWS::DynamoDB::Table" | "AWS::DynamoDB::GlobalTable":
                return self._name(stack, logical, "TableName", 255)
            case "AWS::SecretsManager::Secret":
                return f"arn:{p}:secretsmanager:{r}:{a}:secret:{self._name(stack, logical, 'Name', 200)}-AbCdEf"
            case "AWS::SecretsManager::SecretTargetAttachment":
                return self.resolve(stack, self.resource(stack, logical)["Properties"]["SecretId"])
            case "AWS::Lambda::Function":
                return self._name(stack, logical, "FunctionName")
            case "AWS::StepFunctions::StateMachine":
                return f"arn:{p}:states:{r}:{a}:stateMachine:{self._name(stack, logical, 'StateMachineName', 80)}"
            case "AWS::ApiGateway::RestApi":
                return uuid.uuid5(uuid.NAMESPACE_URL, f"{stack}/{logical}").hex[:10]
            case "AWS::ApiGateway::Stage":
                return self._name(stack, logical, "StageName")
            case "AWS::Logs::LogGroup":
                return self._name(stack, logical, "LogGroupName", 512)
        return f"{stack}-{logical}"

    def get_att(self, stack: str, logical: str, attribute: str) -> Any:
        kind = self.resource(stack, logical)["Type"]
        a, r, p = self.account, self.region, PARTITION
        ref = self.ref(stack, logical)
        match kind, attribute:
            case "AWS::IAM::Role", "Arn":
                path = self.resource(stack, logical).get("Properties", {}).get("Path", "/")
                return f"arn:{p}:iam::{a}:role{path}{ref}"
            case "AWS::S3::Bucket", "Arn":
                return f"arn:{p}:s3:::{ref}"
            case "AWS::S3::Bucket", "RegionalDomainName":
                return f"{ref}.s3.{r}.amazonaws.com"
            case "AWS::KMS::Key", "Arn":
                return f"arn:{p}:kms:{r}:{a}:key/{ref}"
            case "AWS::KMS::Key", "KeyId":
                return ref
            case "AWS::SNS::Topic", "TopicArn":
                return ref
            case "AWS::SNS::Topic", "TopicName":
                return ref.rsplit(":", 1)[1]
            case "AWS::SQS::Queue", "Arn":
                return f"arn:{p}:sqs:{r}:{a}:{ref.rsplit('/', 1)[1]}"
            case "AWS::SQS::Queue", "QueueName":
                return ref.rsplit("/", 1)[1]
            case ("AWS::DynamoDB::Table" | "AWS::DynamoDB::GlobalTable"), "Arn":
                return f"arn:{p}:dynamodb:{r}:{a}:table/{ref}"
            case "AWS::Lambda::Function", "Arn":
                return f"arn:{p}:lambda:{r}:{a}:function:{ref}"
            case "AWS::StepFunctions::StateMachine", "Arn":
                return ref
            case "AWS::StepFunctions::StateMachine", "Name":
                return ref.rsplit(":", 1)[1]
            case "AWS::Logs::LogGroup", "Arn":
                return f"arn:{p}:logs:{r}:{a}:log-group:{ref}:*"
            case "AWS::ApiGateway::RestApi", "RootResourceId":
                return f"{ref}root"
            case "AWS::Events::Rule", "Arn":
                return f"arn:{p}:events:{r}:{a}:rule/{self._name(stack, logical, 'Name')}"
            case "AWS::EC2::SecurityGroup", "GroupId":
                return "sg-" + uuid.uuid5(uuid.NAMESPACE_URL, f"{stack}/{logical}").hex[:17]
        raise ResolveError(f"{stack}: Fn::GetAtt {logical}.{attribute} ({kind}) is not known to the resolver")

    def pseudo(self, stack: str, name: str) -> str:
        values = {"AWS::AccountId": self.account, "AWS::Region": self.region, "AWS::Partition": PARTITION,
                  "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack,
                  "AWS::StackId": f"arn:{PARTITION}:cloudformation:{self.region}:{self.account}:stack/{stack}/1"}
        if name not in values:
            raise ResolveError(f"{stack}: unknown pseudo parameter {name}")
        return values[name]

    def output(self, stack: str, name: str) -> Any:
        outputs = self.templates.get(stack, {}).get("Outputs", {})
        if name not in outputs:
            raise ResolveError(f"no output {name!r} in stack {stack!r} (stacks: {sorted(self.templates)})")
        return self.resolve(stack, outputs[name]["Value"])

    def export(self, name: str) -> Any:
        for stack, template in self.templates.items():
            for output in template.get("Outputs", {}).values():
                if output.get("Export") and self.resolve(stack, output["Export"]["Name"]) == name:
                    return self.resolve(stack, output["Value"])
        raise ResolveError(f"Fn::ImportValue {name!r}: no stack exports it")

    # -- intrinsics -------------------------------------------------------------------------------------------

    def resolve(self, stack: str, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(stack, item) for item in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: v for k, v in ((k, self.resolve(stack, v)) for k, v in value.items()) if v is not _NO_VALUE}
        (key, argument), = value.items()
        match key:
            case "Ref":
                return _NO_VALUE if argument == "AWS::NoValue" else self.ref(stack, argument)
            case "Fn::GetAtt":
                logical, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
                return self.get_att(stack, logical, self.resolve(stack, attribute))
            case "Fn::Join":
                separator, parts = argument
                return str(separator).join(str(part) for part in self.resolve(stack, parts))
            case "Fn::Sub":
                return self._sub(stack, argument)
            case "Fn::Select":
                index, items = argument
                return self.resolve(stack, items)[int(self.resolve(stack, index))]
            case "Fn::Split":
                separator, text = argument
                return str(self.resolve(stack, text)).split(separator)
            case "Fn::GetAZs":
                return [f"{self.region}{suffix}" for suffix in "abc"]
            case "Fn::ImportValue":
                return self.export(self.resolve(stack, argument))
            case "Fn::GetStackOutput":
                other = self.resolve(stack, argument["StackName"])
                if self.resolve(stack, argument.get("Region", self.region)) != self.region:
                    raise ResolveError(f"{stack}: Fn::GetStackOutput of another region: {argument}")
                return self.output(other, self.resolve(stack, argument["OutputName"]))
            case "Fn::FindInMap":
                mapping, top, second = (self.resolve(stack, part) for part in argument)
                return self.templates[stack]["Mappings"][mapping][top][second]
            case "Fn::If":
                condition, if_true, if_false = argument
                chosen = if_true if self.condition(stack, condition) else if_false
                return self.resolve(stack, chosen)
            case "Fn::Base64":
                return self.resolve(stack, argument)
        if key.startswith("Fn::"):
            raise ResolveError(f"{stack}: intrinsic {key} is not supported by the resolver")
        return {key: self.resolve(stack, argument)}

    def condition(self, stack: str, name_or_expression: Any) -> bool:
        expression = (self.templates[stack]["Conditions"][name_or_expression]
                      if isinstance(name_or_expression, str) else name_or_expression)
        (key, argument), = expression.items()
        match key:
            case "Condition":
                return self.condition(stack, argument)
            case "Fn::Equals":
                left, right = (self.resolve(stack, part) for part in argument)
                return bool(left == right)
            case "Fn::Not":
                return not self.condition(stack, argument[0])
            case "Fn::And":
                return all(self.condition(stack, part) for part in argument)
            case "Fn::Or":
                return any(self.condition(stack, part) for part in argument)
        raise ResolveError(f"{stack}: condition function {key} is not supported")

    def _sub(self, stack: str, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(stack, variables[name]))
            if name.startswith("AWS::"):
                return self.pseudo(stack, name)
            if "." in name:
                logical, attribute = name.split(".", 1)
                return str(self.get_att(stack, logical, attribute))
            return str(self.ref(stack, name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()


# -- requests and evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One authorization request: who (a label), the role, the action, the resource, and the request context."""

    who: str
    role_arn: str
    action: str
    resource: str
    context: Mapping[str, str | list[str]] = field(default_factory=dict)
    kms_key: bool = False  # the resource is a KMS key: its key policy must allow the request too

    def __str__(self) -> str:
        return f"{self.who}: {self.action} on {self.resource}"


@dataclass(frozen=True)
class RoleRef:
    stack: str
    logical: str


class Access:
    """A stage's roles, their identity policies, and the resource policies and encryption of its resources."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.region, self.account = resolver.region, resolver.account

    def resources(self, kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for stack, template in self.resolver.templates.items():
            for logical, resource in template.get("Resources", {}).items():
                if resource["Type"] == kind:
                    yield stack, logical, resource

    def role_by_arn(self, arn: str) -> RoleRef:
        for stack, logical, _ in self.resources("AWS::IAM::Role"):
            if self.resolver.get_att(stack, logical, "Arn") == arn:
                return RoleRef(stack, logical)
        raise ResolveError(f"no role with ARN {arn}")

    def identity_policies(self, role_arn: str) -> list[dict[str, Any]]:
        """Every policy that applies to the role: inline, attached AWS::IAM::Policy, managed (customer and AWS)."""
        role = self.role_by_arn(role_arn)
        resolve = self.resolver.resolve
        name = self.resolver.ref(role.stack, role.logical)
        properties = self.resolver.resource(role.stack, role.logical).get("Properties", {})
        policies: list[dict[str, Any]] = []
        for inline in properties.get("Policies", []):
            policies.append({"name": resolve(role.stack, inline["PolicyName"]),
                             "policy": resolve(role.stack, inline["PolicyDocument"])})
        for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for stack, logical, resource in self.resources(kind):
                if name in resolve(stack, resource["Properties"].get("Roles", [])):
                    policies.append({"name": f"{stack}/{logical}",
                                     "policy": resolve(stack, resource["Properties"]["PolicyDocument"])})
        for arn in resolve(role.stack, properties.get("ManagedPolicyArns", [])):
            aws_prefix = f"arn:{PARTITION}:iam::aws:policy/"
            if arn.startswith(aws_prefix):
                policies.append({"name": arn, "policy": aws_managed_policy(arn.rsplit("/", 1)[1])})
                continue
            found = [(stack, logical, managed) for stack, logical, managed in self.resources("AWS::IAM::ManagedPolicy")
                     if self.resolver.ref(stack, logical) == arn]
            if not found:
                raise ResolveError(f"{role_arn}: managed policy {arn} is neither AWS's nor in the templates")
            for stack, logical, managed in found:
                policies.append({"name": f"{stack}/{logical}",
                                 "policy": resolve(stack, managed["Properties"]["PolicyDocument"])})
        return policies

    def resource_policy(self, resource: str) -> dict[str, Any] | None:
        """The resource-based policy that governs ``resource`` (bucket, object, topic, queue, key, secret)."""
        resolve = self.resolver.resolve
        for stack, _, policy in self.resources("AWS::S3::BucketPolicy"):
            bucket = resolve(stack, policy["Properties"]["Bucket"])
            if resource == f"arn:{PARTITION}:s3:::{bucket}" or resource.startswith(f"arn:{PARTITION}:s3:::{bucket}/"):
                document: dict[str, Any] = resolve(stack, policy["Properties"]["PolicyDocument"])
                return document
        for stack, _, policy in self.resources("AWS::SNS::TopicPolicy"):
            if resource in resolve(stack, policy["Properties"]["Topics"]):
                return dict(resolve(stack, policy["Properties"]["PolicyDocument"]))
        for stack, _, policy in self.resources("AWS::SQS::QueuePolicy"):
            arns = [_queue_arn(url) for url in resolve(stack, policy["Properties"]["Queues"])]
            if resource in arns:
                return dict(resolve(stack, policy["Properties"]["PolicyDocument"]))
        for stack, logical, key in self.resources("AWS::KMS::Key"):
            if resource == self.resolver.get_att(stack, logical, "Arn"):
                return dict(resolve(stack, key["Properties"]["KeyPolicy"]))
        for stack, _, policy in self.resources("AWS::SecretsManager::ResourcePolicy"):
            if resource == resolve(stack, policy["Properties"]["SecretId"]):
                return dict(resolve(stack, policy["Properties"]["ResourcePolicy"]))
        return None

    def encryption_key(self, resource: str) -> str | None:
        """The ARN of the customer managed KMS key (in the templates) that encrypts ``resource``, if any.

        None for unencrypted resources and for AWS managed or owned keys (their key policies allow every
        principal of the account through the service)."""
        resolve = self.resolver.resolve
        key: str | None = None
        for stack, logical, bucket in self.resources("AWS::S3::Bucket"):
            arn = self.resolver.get_att(stack, logical, "Arn")
            if resource == arn or resource.startswith(arn + "/"):
                rules = bucket["Properties"].get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
                for rule in rules:
                    key = resolve(stack, rule["ServerSideEncryptionByDefault"].get("KMSMasterKeyID")) or key
        for stack, logical, topic in self.resources("AWS::SNS::Topic"):
            if resource == self.resolver.ref(stack, logical):
                key = resolve(stack, topic["Properties"].get("KmsMasterKeyId"))
        for stack, logical, queue in self.resources("AWS::SQS::Queue"):
            if resource == self.resolver.get_att(stack, logical, "Arn"):
                key = resolve(stack, queue["Properties"].get("KmsMasterKeyId"))
        for stack, logical, secret in self.resources("AWS::SecretsManager::Secret"):
            if resource == self.resolver.ref(stack, logical):
                key = resolve(stack, secret["Properties"].get("KmsKeyId"))
        if key is None or not key.startswith(f"arn:{PARTITION}:kms:"):
            if key is not None and not key.startswith("alias/aws/"):
                raise ResolveError(f"{resource} is encrypted with {key!r}: name the key by its ARN")
            return None
        return key

    def kms_requests(self, who: str, role_arn: str, resource: str, service: str, actions: tuple[str, ...],
                     context: Mapping[str, str] | None = None) -> list[Request]:
        """The KMS requests ``service`` makes for the caller on the key that encrypts ``resource`` (none if none)."""
        key = self.encryption_key(resource)
        if key is None:
            return []
        kms_context = {"kms:ViaService": f"{service}.{self.region}.amazonaws.com", "kms:CallerAccount": self.account,
                       **(context or {})}
        return [Request(who, role_arn, action, key, kms_context, kms_key=True) for action in actions]


def _queue_arn(url: str) -> str:
    host, account, name = url.removeprefix("https://").split("/")
    region = host.split(".")[1]
    return f"arn:{PARTITION}:sqs:{region}:{account}:{name}"


def session_principal(role_arn: str) -> str:
    """The principal of a request made with the role's credentials (an assumed-role session)."""
    account = role_arn.split(":")[4]
    name = role_arn.rsplit("/", 1)[1]
    return f"arn:{PARTITION}:sts::{account}:assumed-role/{name}/session"


def simulation(access: Access, request: Request, *, identity_policies: list[dict[str, Any]] | None = None,
               resource_policy: dict[str, Any] | None = None) -> dict[str, Any]:
    """The iam-simulate input for one request: the role's policies and the resource's policy."""
    policies = identity_policies if identity_policies is not None else access.identity_policies(request.role_arn)
    if resource_policy is None:
        resource_policy = access.resource_policy(request.resource)
    principal = session_principal(request.role_arn) if ":role/" in request.role_arn else request.role_arn
    context = {"aws:SecureTransport": "true", "aws:PrincipalArn": request.role_arn,
               "aws:PrincipalAccount": access.account, "aws:RequestedRegion": access.region, **request.context}
    body: dict[str, Any] = {
        "identityPolicies": copy.deepcopy(policies),
        "serviceControlPolicies": [],
        "resourceControlPolicies": [],
        "request": {"principal": principal, "action": request.action,
                    "resource": {"resource": request.resource, "accountId": access.account},
                    "contextVariables": context},
    }
    if resource_policy is not None:
        body["resourcePolicy"] = resource_policy
    return body


# iam-simulate's answers by their input (its JSON): an answer depends on nothing else, so the tests that evaluate
# the same requests against templates that differ in one statement simulate only the requests that changed.
_ANSWERS: dict[str, dict[str, Any]] = {}


def simulate(simulations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluate ``simulations`` (iam-simulate inputs) in one node process; results in the same order. Inputs that
    were simulated before in this process are answered from then."""
    keys = [json.dumps(sim, sort_keys=True) for sim in simulations]
    new = list(dict.fromkeys(key for key in keys if key not in _ANSWERS))
    if new:
        _ANSWERS.update(zip(new, _run_simulator([json.loads(key) for key in new]), strict=True))
    return [dict(_ANSWERS[key]) for key in keys]


def _run_simulator(simulations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not (ROOT / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir():
        raise RuntimeError("@cloud-copilot/iam-simulate is not installed: run `npm ci` (or `make setup`)")
    completed = subprocess.run(["node", str(SIMULATOR)], input=json.dumps(simulations), capture_output=True,
                               text=True, cwd=ROOT, check=False, timeout=300)
    if completed.returncode != 0:
        raise RuntimeError(f"iam-simulate failed: {completed.stderr[-2000:]}")
    results: list[dict[str, Any]] = json.loads(completed.stdout)
    for sim, result in zip(simulations, results, strict=True):
        if result["errors"]:
            raise ValueError(f"iam-simulate refused {sim['request']}: {json.dumps(result['errors'])[:2000]}")
    return results


def evaluate(access: Access, requests: list[Request]) -> list[tuple[Request, str]]:
    """Each request with the simulator's decision (``Allowed``, ``ImplicitlyDenied``, ``ExplicitlyDenied``)."""
    results = simulate([simulation(access, request) for request in requests])
    return [(request, str(result["result"])) for request, result in zip(requests, results, strict=True)]


# -- what the training state machine does ---------------------------------------------------------------------

EXECUTION = "Weekly-Run-2026-12-01"  # upper case on purpose: SageMaker ARNs are lower case
RUN_ID = "0f8b6f2e-3c1d-4e5a-9b7c-2d4e6f8a0b1c"  # States.UUID() of the sample execution
SAMPLE_PATHS: dict[str, str] = {
    "$$.Execution.Name": EXECUTION,
    "$$.State.RetryCount": "0",
    "$.expert": "trend",
    "$.ids.run": RUN_ID,
    "$.ids.execution": EXECUTION,
    "$.publish.name": f"signal-engine-{RUN_ID}",
    "$.publish.version": "20261201T000000",
    "$.run.dataset_prefix": "bars/1d",
    "$.run.news_prefix": "news",  # the bars export's news files, read by PrepareDatasetWithNews
    "$.run.walk_forward_run": "backtest-0123",  # a backtest fan-out execution whose batches the gate reads
    # the backtest fan-out (step_functions/backtest_fanout.py): the plan's output and one batches.json item
    "$.plan.run": EXECUTION,
    "$.plan.items_key": f"backtests/{EXECUTION}/batches.json",
    "$.plan.merge_job": "se-bt-0123456789abcdef-merge",
    "$.run": EXECUTION,
    "$.job": "se-bt-0123456789abcdef-1",
    "$.batch": "1/3",
    "$.inputs": f"{EXECUTION}/inputs/",
    "$.out": f"{EXECUTION}/batches/1/",
}
SYNC_TRAINING_RULE = "StepFunctionsGetEventsForSageMakerTrainingJobsRule"
SYNC_PROCESSING_RULE = "StepFunctionsGetEventsForSageMakerProcessingJobsRule"


def _value(parameters: Mapping[str, Any], name: str, paths: Mapping[str, str] = SAMPLE_PATHS) -> str:
    """A task parameter's value for the sample execution: literal, JSONPath or States.Format(...)."""
    if name in parameters:
        return str(parameters[name])
    expression = str(parameters[f"{name}.$"])
    if expression in paths:
        return paths[expression]
    match = re.fullmatch(r"States\.Format\('((?:[^'\\]|\\.)*)',\s*(.*)\)", expression)
    if not match:
        raise ResolveError(f"parameter {name}: no sample value for {expression!r}; add it to SAMPLE_PATHS")
    text, arguments = match.group(1), [a.strip() for a in match.group(2).split(",")]
    for argument in arguments:
        value = argument[1:-1] if argument.startswith("'") else paths.get(argument)
        if value is None:
            raise ResolveError(f"parameter {name}: no sample value for {argument!r}; add it to SAMPLE_PATHS")
        text = text.replace("{}", value, 1)
    return text


def states(definition: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state of a definition, including those inside Map and Parallel states."""
    for name, state in definition["States"].items():
        yield name, state
        for inner in (state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])):
            if inner:
                yield from states(inner)


def state_machine_requests(access: Access, stack: str, logical: str) -> list[Request]:
    """Each (action, resource) the state machine's tasks perform, with the KMS requests of encrypted resources."""
    resolver = access.resolver
    properties = resolver.resource(stack, logical)["Properties"]
    definition = json.loads(resolver.resolve(stack, properties["DefinitionString"]))
    role_arn = resolver.resolve(stack, properties["RoleArn"])
    a, r, p = access.account, access.region, PARTITION
    sagemaker = f"arn:{p}:sagemaker:{r}:{a}"
    requests: list[Request] = []
    paths = dict(SAMPLE_PATHS)  # the jobs' outputs ($.dataset.model, ...) are added as the states are walked
    for name, state in states(definition):
        if state["Type"] == "Map" and "ItemReader" in state:
            requests += item_reader_requests(access, stack, logical, name, state, role_arn)
        if state["Type"] != "Task":
            continue
        resource, parameters = state["Resource"], state.get("Parameters", {})

        def add(action: str, arn: str, context: Mapping[str, str] | None = None, *, state_name: str = name,
                out: list[Request] = requests) -> None:
            out.append(Request(state_name, role_arn, action, arn, context or {}))

        def pass_role(arn: str) -> None:
            add("iam:PassRole", arn, {"iam:PassedToService": "sagemaker.amazonaws.com"})

        if resource == "arn:aws:states:::sns:publish":
            topic = _value(parameters, "TopicArn")
            add("sns:Publish", topic)
            requests += access.kms_requests(name, role_arn, topic, "sns", ("kms:GenerateDataKey", "kms:Decrypt"))
        elif resource == "arn:aws:states:::sagemaker:createTrainingJob.sync":
            requests += training_job_requests(access, name, parameters, state.get("ResultPath"), paths)
            job = f"{sagemaker}:training-job/{_value(parameters, 'TrainingJobName').lower()}"
            for action in ("CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob"):
                add(f"sagemaker:{action}", job)
            if parameters.get("Tags"):
                add("sagemaker:AddTags", job)
            for action in ("PutTargets", "PutRule", "DescribeRule"):
                add(f"events:{action}", f"arn:{p}:events:{r}:{a}:rule/{SYNC_TRAINING_RULE}")
            pass_role(_value(parameters, "RoleArn"))
        elif resource == "arn:aws:states:::sagemaker:createProcessingJob.sync":
            requests += processing_job_requests(access, name, parameters)
            job = f"{sagemaker}:processing-job/{_value(parameters, 'ProcessingJobName').lower()}"
            for action in ("CreateProcessingJob", "DescribeProcessingJob", "StopProcessingJob"):
                add(f"sagemaker:{action}", job)
            if parameters.get("Tags"):
                add("sagemaker:AddTags", job)
            for action in ("PutTargets", "PutRule", "DescribeRule"):
                add(f"events:{action}", f"arn:{p}:events:{r}:{a}:rule/{SYNC_PROCESSING_RULE}")
            pass_role(_value(parameters, "RoleArn"))
        elif resource.startswith(f"arn:{p}:lambda:{r}:{a}:function:"):
            add("lambda:InvokeFunction", resource)
        elif resource.startswith("arn:aws:states:::aws-sdk:"):
            service, api = resource.removeprefix("arn:aws:states:::aws-sdk:").split(":")
            action = f"{service}:{api[0].upper()}{api[1:]}"
            if service == "s3":
                obj = f"arn:{p}:s3:::{_value(parameters, 'Bucket')}/{_value(parameters, 'Key')}"
                add(action, obj)
                kms = {"s3:getObject": ("kms:Decrypt",), "s3:putObject": ("kms:GenerateDataKey",)}
                if f"s3:{api}" not in kms:
                    raise ResolveError(f"{name}: s3:{api} has no KMS mapping here yet")
                requests += access.kms_requests(name, role_arn, obj, "s3", kms[f"s3:{api}"],
                                                {"kms:EncryptionContext:aws:s3:arn": obj.split("/", 1)[0]})
            elif service == "sagemaker" and api in ("createModel",):
                add(action, f"{sagemaker}:model/{_value(parameters, 'ModelName').lower()}")
                pass_role(_value(parameters, "ExecutionRoleArn"))
            elif service == "sagemaker" and api == "createEndpointConfig":
                add(action, f"{sagemaker}:endpoint-config/{_value(parameters, 'EndpointConfigName').lower()}")
            elif service == "sagemaker" and api in ("createEndpoint", "updateEndpoint", "describeEndpoint",
                                                    "deleteEndpoint"):
                add(action, f"{sagemaker}:endpoint/{_value(parameters, 'EndpointName').lower()}")
                if api in ("createEndpoint", "updateEndpoint"):  # both resources are required for these two
                    add(action, f"{sagemaker}:endpoint-config/{_value(parameters, 'EndpointConfigName').lower()}")
            elif service == "sagemaker" and api == "listEndpoints":
                add(action, "*")
            else:
                raise ResolveError(f"{name}: {resource} is not mapped to IAM requests yet")
        else:
            raise ResolveError(f"{name}: task resource {resource} is not mapped to IAM requests yet")
    if properties.get("TracingConfiguration", {}).get("Enabled"):
        for action in ("xray:PutTraceSegments", "xray:PutTelemetryRecords"):
            requests.append(Request("(tracing)", role_arn, action, "*"))
    if properties.get("LoggingConfiguration"):
        for action in ("logs:CreateLogDelivery", "logs:PutResourcePolicy", "logs:DescribeLogGroups"):
            requests.append(Request("(logging)", role_arn, action, "*"))
    return requests


def item_reader_requests(access: Access, stack: str, logical: str, name: str, state: Mapping[str, Any],
                         role_arn: str) -> list[Request]:
    """A Distributed Map reads its items from S3 (``ItemReader``) and runs each batch of items as a child execution
    of its own state machine."""
    reader = state["ItemReader"]
    if reader["Resource"] != f"arn:{PARTITION}:states:::s3:getObject":
        raise ResolveError(f"{name}: ItemReader {reader['Resource']} is not mapped to IAM requests yet")
    obj = f"arn:{PARTITION}:s3:::{_value(reader['Parameters'], 'Bucket')}/{_value(reader['Parameters'], 'Key')}"
    requests = [Request(name, role_arn, "s3:GetObject", obj)]
    requests += access.kms_requests(name, role_arn, obj, "s3", ("kms:Decrypt",),
                                    {"kms:EncryptionContext:aws:s3:arn": obj.split("/", 1)[0]})
    if state.get("ItemProcessor", {}).get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED":
        machine = access.resolver.resolve(stack, {"Ref": logical})
        requests.append(Request(name, role_arn, "states:StartExecution", machine))
        execution = machine.replace(":stateMachine:", ":execution:") + f":{EXECUTION}/child-1"
        for action in ("states:DescribeExecution", "states:StopExecution"):
            requests.append(Request(name, role_arn, action, execution))
    return requests


def processing_job_requests(access: Access, state: str, parameters: Mapping[str, Any]) -> list[Request]:
    """What a processing job does with its role (``RoleArn``): list and read each input prefix, write its output
    prefix, with the KMS requests of the buckets' keys."""
    p = PARTITION
    role = _value(parameters, "RoleArn")
    who = f"{state} (processing job)"
    requests: list[Request] = []
    for processing_input in parameters["ProcessingInputs"]:
        uri = _value(processing_input["S3Input"], "S3Uri")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        requests.append(Request(who, role, "s3:ListBucket", f"arn:{p}:s3:::{bucket}", {"s3:prefix": key}))
        target = f"arn:{p}:s3:::{bucket}/{key.rstrip('/')}/run.json"
        requests.append(Request(who, role, "s3:GetObject", target))
        requests += access.kms_requests(who, role, target, "s3", ("kms:Decrypt",),
                                        {"kms:EncryptionContext:aws:s3:arn": f"arn:{p}:s3:::{bucket}"})
    for output in parameters["ProcessingOutputConfig"]["Outputs"]:
        uri = _value(output["S3Output"], "S3Uri")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        target = f"arn:{p}:s3:::{bucket}/{key.rstrip('/')}/metrics.json"
        requests.append(Request(who, role, "s3:PutObject", target))
        requests += access.kms_requests(who, role, target, "s3", ("kms:GenerateDataKey",),
                                        {"kms:EncryptionContext:aws:s3:arn": f"arn:{p}:s3:::{bucket}"})
    return requests


def training_job_requests(access: Access, state: str, parameters: Mapping[str, Any], result_path: str | None,
                          paths: dict[str, str]) -> list[Request]:
    """What a training job does with its role (``RoleArn``): list and read each input channel, write its output
    (``<S3OutputPath>/<job>/output/model.tar.gz``), with the KMS requests of the buckets' keys. The output's URI is
    recorded in ``paths`` under ``<ResultPath>.model``, the input of later jobs."""
    p = PARTITION
    role = _value(parameters, "RoleArn", paths)
    job = _value(parameters, "TrainingJobName", paths)
    who = f"{state} (training job)"
    requests: list[Request] = []
    for channel in parameters["InputDataConfig"]:
        uri = _value(channel["DataSource"]["S3DataSource"], "S3Uri", paths)
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if channel["DataSource"]["S3DataSource"]["S3DataType"] == "S3Prefix" and not key.endswith(".tar.gz"):
            requests.append(Request(who, role, "s3:ListBucket", f"arn:{p}:s3:::{bucket}", {"s3:prefix": key}))
            key = f"{key.rstrip('/')}/AAPL.csv" if "bars/" in key else f"{key.rstrip('/')}/trend/model.tar.gz"
        target = f"arn:{p}:s3:::{bucket}/{key}"
        requests.append(Request(who, role, "s3:GetObject", target))
        requests += access.kms_requests(who, role, target, "s3", ("kms:Decrypt",),
                                        {"kms:EncryptionContext:aws:s3:arn": f"arn:{p}:s3:::{bucket}"})
    output = f"{_value(parameters['OutputDataConfig'], 'S3OutputPath', paths).rstrip('/')}/{job}/output/model.tar.gz"
    writes = [output]
    # The evaluate job writes the bundle into the registry and its report itself (sagemaker_jobs/evaluate.py).
    hyperparameters = parameters.get("HyperParameters", {})
    if "registry" in hyperparameters or "registry.$" in hyperparameters:
        writes.append(f"{_value(hyperparameters, 'registry', paths)}/{paths['$.publish.version']}/manifest.json")
    if "report" in hyperparameters or "report.$" in hyperparameters:
        writes.append(_value(hyperparameters, "report", paths))
    for uri in writes:
        bucket = uri.removeprefix("s3://").split("/", 1)[0]
        target = f"arn:{p}:s3:::{uri.removeprefix('s3://')}"
        requests.append(Request(who, role, "s3:PutObject", target))
        requests += access.kms_requests(who, role, target, "s3", ("kms:GenerateDataKey",),
                                        {"kms:EncryptionContext:aws:s3:arn": f"arn:{p}:s3:::{bucket}"})
    if result_path:
        paths[f"{result_path}.model"] = output
    return requests


# -- what our Lambdas do --------------------------------------------------------------------------------------


def lambda_requests(access: Access) -> list[Request]:
    """Each (action, resource) of the inventory (tests/infra/aws_calls.py) for every function of ours."""
    from tests.infra.aws_calls import LAMBDA_CALLS, lambda_group

    resolver = access.resolver
    a, r, p = access.account, access.region, PARTITION
    requests: list[Request] = []
    for stack, logical, function in access.resources("AWS::Lambda::Function"):
        properties = function["Properties"]
        group = lambda_group(function_handler(properties))
        if group is None:
            continue
        who = f"{logical} ({group})"
        role_arn = resolver.resolve(stack, properties["Role"])
        environment = resolver.resolve(stack, properties.get("Environment", {}).get("Variables", {}))
        for call in LAMBDA_CALLS[group]:
            if call.resource not in environment:
                raise ResolveError(f"{who}: {call.action} needs {call.resource} in its environment")
            value = environment[call.resource]
            if call.service == "s3":
                bucket, _, prefix = value.removeprefix("s3://").partition("/")
                key = f"{prefix.rstrip('/')}/{call.key}".lstrip("/")
                if call.action == "s3:ListBucket":
                    target = f"arn:{p}:s3:::{bucket}"
                    requests.append(Request(who, role_arn, call.action, target, {"s3:prefix": key}))
                    continue
                target = f"arn:{p}:s3:::{bucket}/{key}"
                requests.append(Request(who, role_arn, call.action, target))
                kms = ("kms:GenerateDataKey",) if call.action == "s3:PutObject" else ("kms:Decrypt",)
                requests += access.kms_requests(who, role_arn, target, "s3", kms,
                                                {"kms:EncryptionContext:aws:s3:arn": f"arn:{p}:s3:::{bucket}"})
            elif call.service == "dynamodb":
                requests.append(Request(who, role_arn, call.action, f"arn:{p}:dynamodb:{r}:{a}:table/{value}"))
            elif call.service == "secretsmanager":
                requests.append(Request(who, role_arn, call.action, value))
                requests += access.kms_requests(who, role_arn, value, "secretsmanager", ("kms:Decrypt",))
            elif call.service == "sagemaker-runtime":
                for endpoint in sorted(set(json.loads(value).values())):
                    requests.append(Request(who, role_arn, call.action,
                                            f"arn:{p}:sagemaker:{r}:{a}:endpoint/{endpoint.lower()}"))
            elif call.service == "lambda":
                requests.append(Request(who, role_arn, call.action, f"arn:{p}:lambda:{r}:{a}:function:{value}"))
            else:
                raise ResolveError(f"{who}: no resource mapping for {call.service}")
        dead_letters = properties.get("DeadLetterConfig", {}).get("TargetArn")
        if dead_letters:
            queue = resolver.resolve(stack, dead_letters)
            requests.append(Request(f"{who} (dead letters)", role_arn, "sqs:SendMessage", queue))
            requests += access.kms_requests(who, role_arn, queue, "sqs", ("kms:GenerateDataKey", "kms:Decrypt"))
        if properties.get("TracingConfig", {}).get("Mode") == "Active":
            requests.append(Request(f"{who} (tracing)", role_arn, "xray:PutTraceSegments", "*"))
        requests += destination_requests(access, stack, logical, who, role_arn)
    return requests


def function_handler(properties: Mapping[str, Any]) -> str:
    """A function's handler: ``Handler`` of a zip package, the first word of a container image's command."""
    command = properties.get("ImageConfig", {}).get("Command") or [""]
    return str(properties.get("Handler") or command[0])


def destination_requests(access: Access, stack: str, logical: str, who: str, role_arn: str) -> list[Request]:
    """Lambda sends an asynchronous invocation's record to its destinations with the function's role: an event bus
    destination is an events:PutEvents on that bus."""
    requests = []
    for config_stack, _, config in access.resources("AWS::Lambda::EventInvokeConfig"):
        properties = config["Properties"]
        if config_stack != stack or properties.get("FunctionName") != {"Ref": logical}:
            continue
        for condition in ("OnSuccess", "OnFailure"):
            target = properties.get("DestinationConfig", {}).get(condition, {}).get("Destination")
            if target is None:
                continue
            arn = access.resolver.resolve(stack, target)
            if ":events:" not in arn:
                raise ResolveError(f"{who}: no access mapping for the {condition} destination {arn}")
            requests.append(Request(f"{who} ({condition} destination)", role_arn, "events:PutEvents", arn))
    return requests
