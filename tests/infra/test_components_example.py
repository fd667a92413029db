"""The library example (examples/components_program.py, docs/components.md) runs under the mock
runtime as another team's program would, and registers what the page says it does."""

from __future__ import annotations

from gpufleet.infra.offline.mocks import FleetMocks
from gpufleet.infra.offline.render import run_program
from tests.conftest import REPO

ACCOUNT = "123456789012"


def test_the_example_builds_a_network_and_lustre_storage_with_their_parts():
    mocks = FleetMocks(account_id=ACCOUNT, region="us-east-1")
    registrations, exports = run_program(REPO / "examples" / "components_program.py",
                                         {"aws:region": "us-east-1", "research:accountId": ACCOUNT}, mocks,
                                         stack="dev", project="research")
    by_type: dict[str, list[dict]] = {}
    for r in registrations:
        by_type.setdefault(r["type"], []).append(r)
    assert [r["name"] for r in by_type["gpufleet:network:Network"]] == ["research"]
    assert [r["name"] for r in by_type["gpufleet:storage:LustreStorage"]] == ["corpora"]
    [bucket] = by_type["gpufleet:storage:SecureBucket"]
    assert bucket["urn"] == ("urn:pulumi:dev::research::gpufleet:storage:LustreStorage"
                             "$gpufleet:storage:SecureBucket::corpora-datasets")
    [fsx] = by_type["aws:fsx/lustreFileSystem:LustreFileSystem"]
    [subnet] = [s for s in by_type["aws:ec2/subnet:Subnet"] if s["inputs"].get("availabilityZoneId") == "use1-az4"]
    assert fsx["inputs"]["subnetIds"] == subnet["id"]
    assert (fsx["inputs"]["storageCapacity"], fsx["inputs"]["perUnitStorageThroughput"]) == (1200, 250)
    [dra] = by_type["aws:fsx/dataRepositoryAssociation:DataRepositoryAssociation"]
    assert dra["inputs"]["dataRepositoryPath"] == f"s3://{exports['datasetBucket']}/corpora/"
    assert exports["vpcId"] == by_type["aws:ec2/vpc:Vpc"][0]["id"] and exports["fileSystemId"] == fsx["id"]
    assert all(r["provider"] is None or "pulumi:providers:aws::default" in r["provider"] for r in registrations)
