"""EfaNodeTemplate under mocks: every EFA interface, self-referencing SG, IMDSv2, encrypted root,
and the pool's capacity reservation, checked through Output.apply with the URN in each message."""

from __future__ import annotations

import pulumi
import pytest

from gpufleet.infra import catalog
from gpufleet.infra.efa_node_template import EfaNodeTemplate, EfaNodeTemplateArgs

KEY_ARN = "arn:aws:kms:us-east-1:222222222222:key/11111111-2222-3333-4444-555555555555"
EFA_TYPES = [t for t in catalog.known_instance_types() if catalog.lookup(t).has_efa]


def template(instance_type: str = "p5.48xlarge", **overrides) -> EfaNodeTemplate:
    args = dict(instance_type=instance_type, vpc_id="vpc-0123456789abcdef0", vpc_cidr="10.20.0.0/16",
                s3_prefix_list_id="pl-63a5400a", ebs_kms_key_arn=KEY_ARN,
                capacity_reservation_id="cr-0123456789abcdef0", pool_kind="odcr")
    args.update(overrides)
    return EfaNodeTemplate("gpu", EfaNodeTemplateArgs(**args))


def test_reference_types_have_the_documented_interface_counts():
    expected = {"p5.48xlarge": 32, "p5e.48xlarge": 32, "p5en.48xlarge": 16, "p6-b200.48xlarge": 8, "p4d.24xlarge": 4}
    for instance_type, count in expected.items():
        assert len(catalog.efa_interface_layout(instance_type)) == count, instance_type


@pytest.mark.parametrize("instance_type", EFA_TYPES)
def test_launch_template_has_every_efa_interface_on_its_own_card(mock_runtime, instance_type):
    node = template(instance_type)
    expected = catalog.lookup(instance_type).efa_interfaces

    def check(args):
        urn, interfaces, sg_id = args
        assert len(interfaces) == expected, f"{urn}: {len(interfaces)} interfaces, want {expected}"
        cards = sorted(i["network_card_index"] for i in interfaces)
        assert cards == list(range(expected)), f"{urn}: network cards {cards}"
        for i in interfaces:
            assert i["interface_type"] in ("efa", "efa-only"), f"{urn}: card {i['network_card_index']} is {i['interface_type']}"
            assert i["device_index"] == (0 if i["network_card_index"] == 0 else 1), f"{urn}: card {i['network_card_index']}"
            assert i["security_groups"] == [sg_id], f"{urn}: card {i['network_card_index']} security groups {i['security_groups']}"
            assert i["associate_public_ip_address"] == "false", f"{urn}: card {i['network_card_index']} gets a public IP"
        return True

    lt = node.launch_template
    assert mock_runtime.settle(pulumi.Output.all(lt.urn, lt.network_interfaces, node.security_group.id).apply(check))
    assert node.num_efa_interfaces == expected


def test_security_group_allows_all_traffic_to_and_from_itself_only(mock_runtime):
    node = template()

    def check(args):
        urn, ingress, egress = args
        assert len(ingress) == 1, f"{urn}: ingress {ingress}"
        rule = ingress[0]
        assert (rule["protocol"], rule.get("self"), rule.get("cidr_blocks") or []) == ("-1", True, []), f"{urn}: ingress {rule}"
        assert any(e["protocol"] == "-1" and e.get("self") for e in egress), f"{urn}: no self-referencing egress"
        for e in egress:
            assert "0.0.0.0/0" not in (e.get("cidr_blocks") or []), f"{urn}: egress to the internet {e}"
            if not e.get("self"):
                assert (e["from_port"], e["to_port"]) == (443, 443), f"{urn}: egress {e}"
        return True

    sg = node.security_group
    assert mock_runtime.settle(pulumi.Output.all(sg.urn, sg.ingress, sg.egress).apply(check))


def test_imdsv2_required_and_root_volume_encrypted_with_the_key(mock_runtime):
    node = template(imds_hop_limit=2)

    def check(args):
        urn, metadata, devices = args
        assert metadata["http_tokens"] == "required", f"{urn}: http_tokens {metadata['http_tokens']}"
        assert metadata["http_put_response_hop_limit"] == 2, f"{urn}: hop limit {metadata['http_put_response_hop_limit']}"
        assert len(devices) == 1, f"{urn}: {devices}"
        ebs = devices[0]["ebs"]
        assert (ebs["encrypted"], ebs["kms_key_id"], ebs["volume_type"]) == ("true", KEY_ARN, "gp3"), f"{urn}: {ebs}"
        return True

    lt = node.launch_template
    assert mock_runtime.settle(pulumi.Output.all(lt.urn, lt.metadata_options, lt.block_device_mappings).apply(check))


@pytest.mark.parametrize(("pool_kind", "reservation", "market"), [
    ("odcr", "cr-0123456789abcdef0", None),
    ("capacity-block", "cr-0fedcba9876543210", "capacity-block"),
    ("on-demand", None, None),
])
def test_launch_template_targets_the_pools_reservation(mock_runtime, pool_kind, reservation, market):
    node = template(capacity_reservation_id=reservation, pool_kind=pool_kind)

    def check(args):
        urn, spec, market_options = args
        if reservation is None:
            assert spec.get("capacity_reservation_preference") == "open", f"{urn}: {spec}"
            assert spec.get("capacity_reservation_target") is None, f"{urn}: {spec}"
        else:
            target = spec["capacity_reservation_target"]["capacity_reservation_id"]
            assert target == reservation, f"{urn}: targets {target}, want {reservation}"
        got = market_options["market_type"] if market_options else None
        assert got == market, f"{urn}: market type {got}, want {market}"
        return True

    lt = node.launch_template
    assert mock_runtime.settle(pulumi.Output.all(
        lt.urn, lt.capacity_reservation_specification, lt.instance_market_options).apply(check))


def test_placement_group_only_when_asked(mock_runtime):
    without = template()
    with_pg = EfaNodeTemplate("gpu-pg", EfaNodeTemplateArgs(
        instance_type="p5.48xlarge", vpc_id="vpc-1", vpc_cidr="10.0.0.0/16", s3_prefix_list_id="pl-1",
        ebs_kms_key_arn=KEY_ARN, enable_placement_group=True))
    assert without.placement_group is None
    placement = mock_runtime.settle(pulumi.Output.all(
        with_pg.launch_template.urn, with_pg.launch_template.placement, with_pg.placement_group.name))
    urn, lt_placement, pg_name = placement
    assert lt_placement["group_name"] == pg_name, f"{urn}: placement {lt_placement}"
    groups = mock_runtime.registered("aws:ec2/placementGroup:PlacementGroup")
    assert [g["inputs"]["strategy"] for g in groups] == ["cluster"]


def test_unknown_instance_type_names_the_field():
    with pytest.raises(ValueError, match=r"instance_type: unknown instance type 'p9\.huge'"):
        EfaNodeTemplateArgs(instance_type="p9.huge", vpc_id="vpc-1", vpc_cidr="10.0.0.0/16",
                            s3_prefix_list_id="pl-1", ebs_kms_key_arn=KEY_ARN)
