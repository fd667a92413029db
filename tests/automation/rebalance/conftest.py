"""Fixtures for the rebalance tests: a moto server on 127.0.0.1 for the journal tests."""

from __future__ import annotations

import boto3
import pytest

from automation.rebalance.journal import create_table


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def journal_ddb(moto_endpoint, request):
    """A DynamoDB client on the moto server and a fresh journal table name."""
    ddb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    table = "journal-" + request.node.name.replace("[", "-").replace("]", "")[:60]
    create_table(ddb, table)
    return ddb, table
