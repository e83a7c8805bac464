"""The stores of the platforms that keep responses in a database, on 127.0.0.1: Redis (what
Vercel's Redis integrations connect) as fakeredis's TCP server, which redis-py reaches over a
real socket, and DynamoDB as moto's server, with the table ``serverless.yml`` declares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from fakeredis import TcpFakeServer
from moto.server import ThreadedMotoServer

from tests.peers.serve import free_port, threaded

AWS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# What the Lambda runtime would give boto3, for a process started on moto's AWS.
AWS_ENVIRONMENT = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}

# The table as serverless.yml declares it (tests/test_aws_lambda.py checks the two agree).
TABLE = {
    "AttributeDefinitions": [{"AttributeName": "key", "AttributeType": "S"}],
    "KeySchema": [{"AttributeName": "key", "KeyType": "HASH"}],
    "BillingMode": "PAY_PER_REQUEST",
}


@contextmanager
def redis_server() -> Iterator[str]:
    """A Redis server's URL while it runs."""
    with threaded(TcpFakeServer(("127.0.0.1", free_port()))) as port:
        yield f"redis://127.0.0.1:{port}/0"


@contextmanager
def aws_server() -> Iterator[str]:
    """moto's AWS on 127.0.0.1: its endpoint URL while it runs."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def dynamodb(endpoint: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, **AWS)


def create_table(endpoint: str, name: str, properties: dict[str, Any] | None = None) -> None:
    """The responses table, from ``properties`` (a template's) or as ``serverless.yml`` has it."""
    properties = dict(properties or TABLE)
    ttl = properties.pop("TimeToLiveSpecification", None)
    properties.pop("TableName", None)
    client = dynamodb(endpoint)
    client.create_table(TableName=name, **properties)
    if ttl:
        client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
