"""Real-shaped AWS Lambda events, as API Gateway, Function URLs and ALB send them.

Shapes follow AWS's documented payloads: REST API (v1 proxy integration), HTTP API (payload
format 2.0), Function URL (2.0 with a ``lambda-url`` domain, body often base64) and ALB (target
group). ``invoke.py``-style use: ``python -m tests.peers.lambda_events`` reads a JSON list of
events on stdin, calls the handler named in argv like Lambda would, prints the responses.
"""

from __future__ import annotations

import base64
import importlib
import json
import sys
from typing import Any

REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
TARGET_GROUP = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/poe/6d0ecf831eec9f09"


def rest_v1(method: str, path: str, headers: dict[str, str], body: str | None) -> dict[str, Any]:
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "123456",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/dev{path}",
            "stage": "dev",
            "requestId": REQUEST_ID,
            "accountId": "123456789012",
            "apiId": "1234567890",
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "openai-python"},
            "requestTimeEpoch": 1732600000000,
        },
        "body": body,
        "isBase64Encoded": False,
    }


def http_v2(
    method: str, path: str, headers: dict[str, str], body: str | None, *, domain: str = "", b64: bool = False
) -> dict[str, Any]:
    domain = domain or "r3pmxmplak.execute-api.us-east-1.amazonaws.com"
    encoded = base64.b64encode(body.encode()).decode() if b64 and body is not None else body
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": domain.split(".")[0],
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "openai-python",
            },
            "requestId": REQUEST_ID,
            "routeKey": "$default",
            "stage": "$default",
            "time": "26/Nov/2026:01:00:00 +0000",
            "timeEpoch": 1795650000000,
        },
        "isBase64Encoded": b64,
    }
    if encoded is not None:
        event["body"] = encoded
    return event


def function_url(method: str, path: str, headers: dict[str, str], body: str | None) -> dict[str, Any]:
    # Function URLs send the 2.0 format; text bodies may still arrive base64-encoded.
    return http_v2(method, path, headers, body, domain="abcdefghij.lambda-url.us-east-1.on.aws", b64=True)


def alb(method: str, path: str, headers: dict[str, str], body: str | None) -> dict[str, Any]:
    return {
        "requestContext": {"elb": {"targetGroupArn": TARGET_GROUP}},
        "httpMethod": method,
        "path": path,
        "queryStringParameters": {},
        "headers": {k.lower(): v for k, v in headers.items()},
        "body": body or "",
        "isBase64Encoded": False,
    }


SHAPES = {"rest_v1": rest_v1, "http_v2": http_v2, "function_url": function_url, "alb": alb}


class Context:
    """The attributes of a Lambda context object that handlers read."""

    function_name = "poe-openai-proxy"
    aws_request_id = REQUEST_ID
    memory_limit_in_mb = 1024

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def main() -> None:
    module, _, attribute = sys.argv[1].rpartition(".")
    handler = getattr(importlib.import_module(module), attribute)
    events = json.load(sys.stdin)
    json.dump([handler(event, Context()) for event in events], sys.stdout)


if __name__ == "__main__":
    main()
