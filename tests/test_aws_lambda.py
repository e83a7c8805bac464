"""AWS Lambda: ``serverless.yml`` packaged offline by the pinned osls CLI, its CloudFormation
checked by cfn-lint and by assertions, and the packaged bundle itself run as Lambda runs it.

The owner-mode secrets come from SSM Parameter Store, served by moto on 127.0.0.1: osls resolves
them at package time as it would against AWS. Then the bundle's own files (its manylinux wheels,
under Python 3.12 like the ``python3.12`` runtime) answer real-shaped events through the Mangum
handler, imported by the dotted name the template gives, with the template's environment; and
the Lambda Web Adapter script starts uvicorn from the bundle and streams token by token. Stored
responses go to the template's DynamoDB table, created in moto from the template itself.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import openai
import pytest
from packaging.requirements import Requirement

from tests.peers.bots import POE_KEY, assert_streams_token_by_token, wav
from tests.peers.lambda_events import SHAPES
from tests.peers.runtimes import npm_tool, python312
from tests.peers.serve import free_port, serving_process
from tests.peers.stores import AWS_ENVIRONMENT, TABLE, aws_server, create_table

ROOT = Path(__file__).resolve().parent.parent
OSLS = npm_tool("osls")
WHEELS = ROOT / "tools" / "wheels"
LAMBDA_PYTHON = python312()  # the runtime serverless.yml names
SSM_PREFIX = "/poe-openai-proxy-test"
ACCESS_TOKEN = "proxy-token-from-ssm-0123456789"
LWA_LAYER = re.compile(r"^arn:aws:lambda:us-east-1:753240598075:layer:LambdaAdapterLayerX86:\d+$")
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

pytestmark = [
    pytest.mark.skipif(OSLS is None, reason="osls is not installed (make test installs tools/npm)"),
    pytest.mark.skipif(LAMBDA_PYTHON is None, reason="python3.12 (Lambda's runtime) is not on PATH"),
]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A local AWS (moto) holding the owner-mode settings in SSM, as ``serverless.yml`` expects."""
    with aws_server() as url:
        ssm = boto3.client("ssm", endpoint_url=url, region_name="us-east-1", **aws_keys())
        ssm.put_parameter(Name=f"{SSM_PREFIX}/poe-api-key", Value=POE_KEY, Type="SecureString")
        ssm.put_parameter(Name=f"{SSM_PREFIX}/proxy-access-token", Value=ACCESS_TOKEN, Type="SecureString")
        yield url


def aws_keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory, moto_url: str, poe_server: str) -> Path:
    """``osls package`` on a copy of the service: no AWS account, no Docker, no index but the wheels."""
    service = tmp_path_factory.mktemp("service")
    shutil.copy(ROOT / "serverless.yml", service)
    for package in ("core", "adapters"):
        shutil.copytree(ROOT / package, service / package, ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path_factory.mktemp("home")
    env = {
        **os.environ,
        **FAKE_AWS,
        "HOME": str(home),
        "AWS_ENDPOINT_URL": moto_url,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(WHEELS),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "SLS_TELEMETRY_DISABLED": "1",
    }
    out = service / "out"
    command = [str(OSLS), "package", "--stage", "test", "--package", str(out)]
    command += [f"--param=poeBaseUrl={poe_server}", f"--param=ssmPrefix={SSM_PREFIX}"]
    done = subprocess.run(command, cwd=service, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def template(packaged: Path) -> dict[str, Any]:
    return dict(json.loads((packaged / "cloudformation-template-update-stack.json").read_text()))


@pytest.fixture(scope="module")
def bundle(packaged: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployment zip unpacked, with file modes kept, as Lambda unpacks it into the task root."""
    task_root = tmp_path_factory.mktemp("task")
    with zipfile.ZipFile(packaged / "poe-openai-proxy.zip") as archive:
        for info in archive.infolist():
            archive.extract(info, task_root)
            mode = info.external_attr >> 16
            if mode:
                (task_root / info.filename).chmod(mode & 0o777)
    return task_root


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in template["Resources"].items() if r["Type"] == kind}


def function(template: dict[str, Any], handler: str) -> dict[str, Any]:
    (props,) = [p for p in resources(template, "AWS::Lambda::Function").values() if p["Handler"] == handler]
    return props


# -- the template --------------------------------------------------------------------------


def test_cfn_lint_finds_no_errors_in_the_template(packaged: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cfnlint",
            "--format",
            "parseable",
            "--",
            "cloudformation-template-update-stack.json",
        ],
        cwd=packaged,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode & 2 == 0, done.stdout  # bit 2: errors
    # The only warning is osls's own explicit DependsOn next to a Ref (W3005).
    rules = {line.split(":")[3] for line in done.stdout.splitlines() if line}
    assert rules <= {"W3005"}, done.stdout


def test_streaming_function_runs_the_web_adapter_behind_a_streaming_url(template: dict[str, Any]) -> None:
    stream = function(template, "adapters/lambda_web_adapter.sh")
    assert stream["Runtime"] == "python3.12"
    assert stream["Timeout"] == 900  # a Function URL allows 15 minutes: long answers still stream
    (layer,) = stream["Layers"]
    assert LWA_LAYER.match(layer)
    variables = stream["Environment"]["Variables"]
    assert variables["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert variables["AWS_LWA_INVOKE_MODE"] == "response_stream"

    (url,) = resources(template, "AWS::Lambda::Url").values()
    assert url["InvokeMode"] == "RESPONSE_STREAM"
    assert url["AuthType"] == "NONE"  # the proxy authenticates: Poe keys or PROXY_ACCESS_TOKEN
    assert "Cors" not in url  # the app answers CORS itself, on every response
    assert url["TargetFunctionArn"]["Fn::GetAtt"][0] in {
        name for name, r in template["Resources"].items() if r["Properties"] is stream
    }
    permissions = resources(template, "AWS::Lambda::Permission").values()
    assert any(
        p["Action"] == "lambda:InvokeFunctionUrl" and p["FunctionUrlAuthType"] == "NONE" for p in permissions
    )


def test_buffered_fallback_serves_both_route_families_on_an_http_api(template: dict[str, Any]) -> None:
    api = function(template, "adapters.aws_lambda.handler")
    assert api["Runtime"] == "python3.12"
    assert api["Timeout"] <= 30  # API Gateway ends every request at 30 s anyway
    routes = {r["RouteKey"] for r in resources(template, "AWS::ApiGatewayV2::Route").values()}
    assert routes == {"ANY /v1/{proxy+}", "ANY /{proxy+}"}
    (integration,) = resources(template, "AWS::ApiGatewayV2::Integration").values()
    assert integration["PayloadFormatVersion"] == "2.0"


def test_settings_and_ssm_secrets_reach_both_functions(template: dict[str, Any], poe_server: str) -> None:
    for handler in ("adapters/lambda_web_adapter.sh", "adapters.aws_lambda.handler"):
        variables = function(template, handler)["Environment"]["Variables"]
        assert variables["POE_BASE_URL"] == poe_server  # --param=poeBaseUrl
        assert variables["POE_BACKEND"] == "bot"
        assert variables["DEFAULT_MODEL"] == "claude-opus-4.5"
        assert variables["POE_API_KEY"] == POE_KEY  # resolved from SSM (moto) at package time
        assert variables["PROXY_ACCESS_TOKEN"] == ACCESS_TOKEN
        assert len(json.dumps(variables)) < 4096  # Lambda's limit on all variables together


def test_the_template_keeps_responses_in_a_table_of_its_own(template: dict[str, Any], moto_url: str) -> None:
    (table,) = resources(template, "AWS::DynamoDB::Table").values()
    assert table["TableName"] == "poe-openai-proxy-test-responses"  # service and stage: one per stage
    assert table["BillingMode"] == "PAY_PER_REQUEST"  # no capacity to plan
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires", "Enabled": True}
    assert {k: table[k] for k in TABLE} == TABLE  # what the stand-in table of the other tests is
    for handler in ("adapters/lambda_web_adapter.sh", "adapters.aws_lambda.handler"):
        assert (
            function(template, handler)["Environment"]["Variables"]["RESPONSES_TABLE"] == table["TableName"]
        )
    # The functions' role may read and write that table, and nothing else of DynamoDB.
    (table_name,) = [n for n, r in template["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"]
    statements = [
        statement
        for role in resources(template, "AWS::IAM::Role").values()
        for policy in role.get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        if any(action.startswith("dynamodb:") for action in statement["Action"])
    ]
    assert statements == [
        {
            "Effect": "Allow",
            "Action": ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"],
            "Resource": {"Fn::GetAtt": [table_name, "Arn"]},
        }
    ]
    create_table(moto_url, "from-the-template", table)  # DynamoDB takes it as written
    described = boto3.client("dynamodb", endpoint_url=moto_url, **aws_keys(), region_name="us-east-1")
    assert (
        described.describe_time_to_live(TableName="from-the-template")["TimeToLiveDescription"][
            "AttributeName"
        ]
        == "expires"
    )


# -- the bundle ----------------------------------------------------------------------------


def test_bundle_holds_the_app_and_its_pinned_dependencies_only(packaged: Path, bundle: Path) -> None:
    zipped = (packaged / "poe-openai-proxy.zip").stat().st_size
    assert zipped < 50 * 2**20  # Lambda's limit for a direct upload
    top = {path.name for path in bundle.iterdir()}
    assert {"core", "adapters", "httpx", "httptools", "mangum", "uvicorn", "anyio", "redis"} <= top
    # boto3 is the runtime's: not bundled again.
    assert not top & {"tests", "node_modules", "tools", "bench", "docs", ".venv", "starlette", "boto3"}
    assert not (bundle / "adapters" / "aws_requirements.txt").exists()
    script = bundle / "adapters" / "lambda_web_adapter.sh"
    assert script.stat().st_mode & stat.S_IXUSR  # Lambda runs it directly as the handler


def test_lambda_pins_satisfy_pyproject() -> None:
    """The bundle's exact pins may not drift outside what pyproject.toml declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    declared += [
        Requirement(r) for extra in ("aws", "serve") for r in project["optional-dependencies"][extra]
    ]
    pins = {}
    for line in (ROOT / "adapters" / "aws_requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    for requirement in declared:
        assert requirement.name in pins, f"{requirement.name} is not in the Lambda bundle"
        assert requirement.specifier.contains(pins[requirement.name]), requirement


def test_lambda_accepts_the_templates_functions_with_the_packaged_zip(
    packaged: Path, template: dict[str, Any], moto_url: str
) -> None:
    """moto's Lambda API: each function as the template declares it, created from the real zip."""
    session = {"endpoint_url": moto_url, "region_name": "us-east-1", **aws_keys()}
    role = boto3.client("iam", **session).create_role(
        RoleName=f"poe-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    lam = boto3.client("lambda", **session)
    code = (packaged / "poe-openai-proxy.zip").read_bytes()
    for props in resources(template, "AWS::Lambda::Function").values():
        name = f"{props['FunctionName']}-{uuid.uuid4().hex[:6]}"
        lam.create_function(
            FunctionName=name,
            Runtime=props["Runtime"],
            Handler=props["Handler"],
            Role=role,
            Code={"ZipFile": code},
            Timeout=props["Timeout"],
            MemorySize=props["MemorySize"],
            Environment=props["Environment"],
            Architectures=props["Architectures"],
        )
        config = lam.get_function(FunctionName=name)["Configuration"]
        assert config["CodeSize"] == len(code)
        assert (config["Runtime"], config["Handler"]) == (props["Runtime"], props["Handler"])


# -- the bundle, run as Lambda runs it -------------------------------------------------------

AUTH = {"Authorization": f"Bearer {ACCESS_TOKEN}", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, template: dict[str, Any], moto_url: str) -> Path:
    """What Lambda's python3.12 runtime has besides the bundle: boto3 and what it needs (linked
    from this virtualenv: all pure Python). And the AWS it reaches: moto, where the template's
    table has been created."""
    site = tmp_path_factory.mktemp("runtime-site")
    for name in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3"):
        path = Path(str(importlib.import_module(name).__file__))
        source = path.parent if path.name == "__init__.py" else path
        (site / source.name).symlink_to(source)
    (table,) = resources(template, "AWS::DynamoDB::Table").values()
    create_table(moto_url, table["TableName"], table)
    return site


def lambda_environment(
    template: dict[str, Any], handler: str, task_root: Path, runtime: Path, aws: str
) -> dict[str, str]:
    """The template's variables, plus what the runtime sets; nothing from this test process."""
    return {
        **function(template, handler)["Environment"]["Variables"],
        **AWS_ENVIRONMENT,
        "AWS_ENDPOINT_URL": aws,  # moto, where AWS would be
        "AWS_LAMBDA_FUNCTION_NAME": handler,
        "PATH": f"{Path(str(LAMBDA_PYTHON)).parent}:/usr/bin:/bin",
        "PYTHONPATH": f"{task_root}:{runtime}",
        "LAMBDA_TASK_ROOT": str(task_root),
        "LOG_LEVEL": "WARNING",
    }


def invoke(
    template: dict[str, Any], task_root: Path, runtime: Path, aws: str, events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One warm instance: a fresh ``python3.12`` imports the handler the template names, then
    receives the events one after another."""
    handler = "adapters.aws_lambda.handler"
    done = subprocess.run(
        [str(LAMBDA_PYTHON), str(ROOT / "tests" / "peers" / "lambda_events.py"), handler],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        cwd=task_root,
        env=lambda_environment(template, handler, task_root, runtime, aws),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def chat_body(content: str, **extra: Any) -> str:
    return json.dumps({"model": "echo", "messages": [{"role": "user", "content": content}], **extra})


def body_of(response: dict[str, Any]) -> str:
    body = response.get("body") or ""
    return base64.b64decode(body).decode() if response.get("isBase64Encoded") else body


def headers_of(response: dict[str, Any]) -> dict[str, str]:
    single = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    multi = {k.lower(): v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}
    return {**multi, **single}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_event_shape_gets_the_proxys_answers(
    template: dict[str, Any], bundle: Path, runtime: Path, moto_url: str, shape: str
) -> None:
    make = SHAPES[shape]
    events = [
        make("POST", "/v1/chat/completions", AUTH, chat_body("hello lambda")),
        make("POST", "/v1/chat/completions", AUTH, chat_body("streamed reply", stream=True)),
        make("OPTIONS", "/v1/chat/completions", {"Origin": "https://app.example"}, None),
        make("POST", "/v1/chat/completions", {"Content-Type": "application/json"}, chat_body("x")),
        make("GET", "/", {}, None),
        make("POST", "/chat/completions", AUTH, "{not json"),
        make(
            "POST", "/v1/audio/speech", AUTH, json.dumps({"model": "tts-1", "voice": "alloy", "input": "hi"})
        ),
    ]
    chat, stream, preflight, no_key, root, bad, speech = invoke(template, bundle, runtime, moto_url, events)

    assert chat["statusCode"] == 200
    assert json.loads(body_of(chat))["choices"][0]["message"]["content"] == "hello lambda"

    # Buffered: the whole SSE stream arrives in one response, complete and in order.
    assert stream["statusCode"] == 200
    assert headers_of(stream)["content-type"].startswith("text/event-stream")
    data = [line[6:] for line in body_of(stream).splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for d in data[:-1])
    assert text == "streamed reply"

    assert preflight["statusCode"] == 204
    assert headers_of(preflight)["access-control-allow-origin"] == "*"
    for response, status, code in (
        (no_key, 401, "invalid_api_key"),
        (root, 404, "unknown_url"),
        (bad, 400, "invalid_json"),
    ):
        assert response["statusCode"] == status
        assert json.loads(body_of(response))["error"]["code"] == code
        assert headers_of(response)["access-control-allow-origin"] == "*"

    # Bytes that are not text go back base64-encoded, as API Gateway and Lambda take them.
    assert (speech["statusCode"], speech["isBase64Encoded"]) == (200, True)
    assert headers_of(speech)["content-type"].startswith("audio/")
    assert base64.b64decode(speech["body"]) == wav("hi")


@pytest.fixture
def web_adapter_app(template: dict[str, Any], bundle: Path, runtime: Path, moto_url: str) -> Iterator[str]:
    """The streaming function's handler script, started as Lambda Web Adapter starts it: from the
    task root, with the template's environment and ``python3`` being the runtime's Python."""
    port = free_port()
    bin_dir = bundle.parent / "runtime-bin"
    bin_dir.mkdir(exist_ok=True)
    python3 = bin_dir / "python3"
    if not python3.exists():
        python3.symlink_to(str(LAMBDA_PYTHON))
    handler = "adapters/lambda_web_adapter.sh"
    env = lambda_environment(template, handler, bundle, runtime, moto_url)
    env.update(PORT=str(port), PATH=f"{bin_dir}:{env['PATH']}")
    process = subprocess.Popen([str(bundle / handler)], env=env, cwd="/")
    # The Lambda Web Adapter's readiness check takes any answer below 500 (``/`` is a 404 here).
    with serving_process(process, f"http://127.0.0.1:{port}") as url:
        yield url


def test_the_web_adapter_script_streams_token_by_token(web_adapter_app: str) -> None:
    assert_streams_token_by_token(web_adapter_app, AUTH, timeout=10)
    assert httpx.get(web_adapter_app, timeout=5).status_code == 404  # readiness: below 500


def test_a_conversation_begun_on_one_function_goes_on_in_the_other(
    web_adapter_app: str, template: dict[str, Any], bundle: Path, runtime: Path, moto_url: str
) -> None:
    """The streaming function stores a streamed response in the template's table; an instance of
    the buffered function, another process, retrieves it and continues from it."""
    client = openai.OpenAI(base_url=f"{web_adapter_app}/v1", api_key=ACCESS_TOKEN, max_retries=0)
    with client.responses.stream(model="echo", input="kept in DynamoDB") as stream:
        first = stream.get_final_response()
    assert first.store is True
    body = json.dumps({"model": "inspect", "input": "and then?", "previous_response_id": first.id})
    make = SHAPES["function_url"]
    kept, following = invoke(
        template,
        bundle,
        runtime,
        moto_url,
        [make("GET", f"/v1/responses/{first.id}", AUTH, None), make("POST", "/v1/responses", AUTH, body)],
    )
    assert kept["statusCode"] == 200
    assert json.loads(body_of(kept))["output"][0]["content"][0]["text"] == "kept in DynamoDB"
    assert following["statusCode"] == 200, body_of(following)
    answer = json.loads(body_of(following))
    seen = json.loads(answer["output"][0]["content"][0]["text"])["query"]
    assert [(m["role"], m["content"]) for m in seen[:2]] == [
        ("user", "kept in DynamoDB"),
        ("bot", "kept in DynamoDB"),
    ]
    assert answer["previous_response_id"] == first.id
