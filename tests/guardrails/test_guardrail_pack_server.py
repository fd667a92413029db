"""The pack as the Pulumi CLI runs it: ``python __main__.py`` in infra/guardrails prints a port and
serves the Analyzer gRPC protocol; asked about a resource, it answers with our rules' verdicts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from gpufleet.infra.guardrails.engine import RULES

PACK = Path(__file__).resolve().parents[2] / "infra" / "guardrails"
pytestmark = pytest.mark.timeout(120)  # the pack process is started here; never wait on it unbounded


@pytest.fixture(scope="module")
def analyzer():
    process = subprocess.Popen([sys.executable, "-u", "__main__.py"], cwd=PACK, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        port = process.stdout.readline().strip()  # the pack's first line is its port, as the CLI expects
        assert port.isdigit(), f"no port from the pack: {port!r} {process.stderr.read() if process.poll() else ''}"
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.kill()
        process.wait(timeout=10)


def struct(value: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def analyze(stub, type_token: str, name: str, props: dict, account: str = "222222222222"):
    provider = analyzer_pb2.AnalyzerProviderResource(
        type="pulumi:providers:aws", urn="urn:pulumi:training::gpufleet::pulumi:providers:aws::aws", name="aws",
        properties=struct({"allowedAccountIds": json.dumps([account]), "region": "us-east-1"}))
    request = analyzer_pb2.AnalyzeRequest(type=type_token, name=name, properties=struct(props),
                                          urn=f"urn:pulumi:training::gpufleet::{type_token}::{name}",
                                          provider=provider)
    return stub.Analyze(request, timeout=30).diagnostics


def test_the_pack_serves_every_rule(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "gpufleet-guardrails"
    assert len(info.policies) == len(RULES)
    assert {p.name for p in info.policies} >= {r.id for r in RULES}


def test_the_pack_flags_ssh_from_the_world_and_passes_a_private_group(analyzer):
    started = time.monotonic()
    open_group = {"vpcId": "vpc-1", "ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22,
                                                 "cidrBlocks": ["0.0.0.0/0"]}]}
    [diagnostic] = analyze(analyzer, "aws:ec2/securityGroup:SecurityGroup", "bastion", open_group)
    assert diagnostic.policyName == "ec2.no-world-ingress" and "0.0.0.0/0" in diagnostic.message
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    private = {"vpcId": "vpc-1", "ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}]}
    assert list(analyze(analyzer, "aws:ec2/securityGroup:SecurityGroup", "nodes", private)) == []
    assert time.monotonic() - started < 60


def test_the_pack_knows_the_phi_account_from_the_stack_files(analyzer):
    public = {"endpointPublicAccess": True, "encryptionConfigKeyArn": "arn:aws:kms:us-east-1:333333333333:key/k"}
    [diagnostic] = analyze(analyzer, "eks:index:Cluster", "eks", public, account="333333333333")
    assert diagnostic.policyName == "eks.private-endpoint" and "333333333333" in diagnostic.message
    assert list(analyze(analyzer, "eks:index:Cluster", "eks", public, account="222222222222")) == []
