"""LustreStorage under mocks: PERSISTENT_2 in one subnet, encryption everywhere, TLS-only public-blocked
bucket, both-way data repository association, Lustre ports from itself and the clients."""

from __future__ import annotations

import json

import pulumi
import pytest

from gpufleet.infra.key_policies import fsx_s3_role_pattern
from gpufleet.infra.lustre_storage import LustreStorage, LustreStorageArgs

CLIENT_SG = "sg-0aaaaaaaaaaaaaaaa"


def storage(**overrides) -> LustreStorage:
    args = dict(vpc_id="vpc-1", subnet_id="subnet-0123456789abcdef0", account_id="222222222222",
                region="us-east-1", fsx_capacity_gib=4800, fsx_throughput_per_tib=250,
                client_security_group_ids=[CLIENT_SG])
    args.update(overrides)
    return LustreStorage("data", LustreStorageArgs(**args))


def test_file_system_is_persistent2_encrypted_in_one_subnet(mock_runtime):
    lustre = storage()
    fs = lustre.file_system

    def check(args):
        urn, deployment, subnet_ids, kms_key_id, capacity, throughput = args
        assert deployment == "PERSISTENT_2", f"{urn}: {deployment}"
        assert subnet_ids == "subnet-0123456789abcdef0", f"{urn}: subnet_ids {subnet_ids!r} (one string)"
        assert kms_key_id.startswith("arn:aws:kms:us-east-1:222222222222:key/"), f"{urn}: kms {kms_key_id}"
        assert (capacity, throughput) == (4800, 250), f"{urn}: {capacity} GiB at {throughput}"
        return True

    assert mock_runtime.settle(pulumi.Output.all(fs.urn, fs.deployment_type, fs.subnet_ids, fs.kms_key_id,
                                                 fs.storage_capacity, fs.per_unit_storage_throughput).apply(check))


def test_data_repository_association_imports_and_exports_every_event(mock_runtime):
    dra = storage(fsx_import_prefix="corpora/").association

    def check(args):
        urn, s3, batch, path, fs_path = args
        for direction in ("auto_import_policy", "auto_export_policy"):
            events = sorted(s3[direction]["events"])
            assert events == ["CHANGED", "DELETED", "NEW"], f"{urn}: {direction} {events}"
        assert batch is True, f"{urn}: batch_import_meta_data_on_create {batch}"
        assert path.startswith("s3://") and path.endswith("/corpora/"), f"{urn}: {path}"
        assert fs_path == "/datasets", f"{urn}: {fs_path}"
        return True

    assert mock_runtime.settle(pulumi.Output.all(dra.urn, dra.s3, dra.batch_import_meta_data_on_create,
                                                 dra.data_repository_path, dra.file_system_path).apply(check))


def test_bucket_is_kms_encrypted_versioned_private_and_tls_only(mock_runtime):
    lustre = storage()
    mock_runtime.settle(lustre.bucket.arn)
    [key] = mock_runtime.registered("aws:kms/key:Key")
    [sse] = mock_runtime.registered(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    rule = sse["inputs"]["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key["outputs"]["arn"]}
    assert rule["bucketKeyEnabled"] is True
    assert key["inputs"]["enableKeyRotation"] is True
    [versioning] = mock_runtime.registered("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning["inputs"]["versioningConfiguration"]["status"] == "Enabled"
    [block] = mock_runtime.registered("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    assert all(block["inputs"][f] is True for f in flags), block["inputs"]
    [policy] = mock_runtime.registered("aws:s3/bucketPolicy:BucketPolicy")
    [statement] = json.loads(policy["inputs"]["policy"])["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_security_group_opens_lustre_ports_to_itself_and_clients_only(mock_runtime):
    sg = storage().security_group

    def check(args):
        urn, ingress = args
        ports = sorted({(r["from_port"], r["to_port"]) for r in ingress})
        assert ports == [(988, 988), (1018, 1023)], f"{urn}: ports {ports}"
        for low, high in ports:
            sources = [r for r in ingress if (r["from_port"], r["to_port"]) == (low, high)]
            assert any(r.get("self") for r in sources), f"{urn}: {low}-{high} not from itself"
            assert any(r.get("security_groups") == [CLIENT_SG] for r in sources), f"{urn}: {low}-{high} not from clients"
            assert not any(r.get("cidr_blocks") for r in sources), f"{urn}: {low}-{high} open to CIDRs"
        return True

    assert mock_runtime.settle(pulumi.Output.all(sg.urn, sg.ingress).apply(check))


@pytest.mark.parametrize(("field", "value"), [("fsx_capacity_gib", 3600), ("fsx_capacity_gib", 0),
                                              ("fsx_throughput_per_tib", 200)])
def test_capacity_and_throughput_aws_refuses_are_refused(field, value):
    args = dict(vpc_id="vpc-1", subnet_id="subnet-1", account_id="222222222222", region="us-east-1",
                fsx_capacity_gib=2400, fsx_throughput_per_tib=125)
    args[field] = value
    with pytest.raises(ValueError, match=f"^{field}: {value}"):
        LustreStorageArgs(**args)


def test_dataset_key_admits_the_fsx_s3_service_linked_role_through_s3_only(mock_runtime):
    lustre = storage()
    mock_runtime.settle(lustre.file_system_id)
    [key] = [r["inputs"] for r in mock_runtime.registered("aws:kms/key:Key") if "data-key" in r["name"]]
    [fsx] = [s for s in json.loads(key["policy"])["Statement"] if s["Sid"] == "FsxDataRepositoryUse"]
    assert fsx["Principal"] == {"AWS": "*"}
    assert fsx["Condition"]["ArnLike"]["aws:PrincipalArn"] == fsx_s3_role_pattern("aws", "222222222222")
    assert fsx["Condition"]["StringEquals"] == {"kms:CallerAccount": "222222222222",
                                                "kms:ViaService": "s3.us-east-1.amazonaws.com"}
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(fsx["Action"])
