"""Rendered inputs as AWS parameters, and rendered ids replaced by real ones (pure, no server)."""

from __future__ import annotations

import botocore.session
import pytest

from gpufleet.automation.sandbox.api_params import UnappliedInput, to_params
from gpufleet.automation.sandbox.id_map import IdMap

EC2 = botocore.session.get_session().get_service_model("ec2")
DATA = EC2.operation_model("CreateLaunchTemplate").input_shape.members["LaunchTemplateData"]


def test_launch_template_inputs_take_the_api_types():
    rendered = {"instanceType": "p5.48xlarge", "ebsOptimized": "true",
                "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 2},
                "networkInterfaces": [{"networkCardIndex": 1, "deviceIndex": 1, "interfaceType": "efa-only",
                                       "securityGroups": ["sg-1"], "associatePublicIpAddress": "false"}],
                "blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"volumeSize": "200", "encrypted": "true"}}],
                "tagSpecifications": [{"resourceType": "instance", "tags": {"a": "1", "b": "2"}}],
                "placement": None}
    assert to_params(rendered, DATA, where="lt", renames={"securityGroups": "Groups"}) == {
        "InstanceType": "p5.48xlarge", "EbsOptimized": True,
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2},
        "NetworkInterfaces": [{"NetworkCardIndex": 1, "DeviceIndex": 1, "InterfaceType": "efa-only",
                               "Groups": ["sg-1"], "AssociatePublicIpAddress": False}],
        "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 200, "Encrypted": True}}],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "a", "Value": "1"},
                                                                     {"Key": "b", "Value": "2"}]}]}


@pytest.mark.parametrize(("rendered", "where"), [
    ({"hibernationOptionz": {"configured": True}}, "lt.hibernationOptionz"),
    ({"metadataOptions": {"httpTokenz": "required"}}, "lt.metadataOptions.httpTokenz"),
    ({"networkInterfaces": [{"securityGroups": ["sg-1"]}]}, "lt.networkInterfaces[0].securityGroups"),
    ({"ebsOptimized": "yes"}, "lt.ebsOptimized"),
])
def test_an_input_with_no_api_member_or_the_wrong_type_is_refused_by_path(rendered, where):
    with pytest.raises(UnappliedInput) as err:
        to_params(rendered, DATA, where="lt")
    assert str(err.value).startswith(f"{where}:")


def test_rendered_ids_are_replaced_everywhere_longest_first():
    ids = IdMap()
    ids.add("cr-0aa", "cr-real")
    ids.add("arn:aws:ec2:us-east-1:111111111111:capacity-reservation/cr-0aa", "arn:aws:ec2:us-east-1:111111111111:capacity-reservation/cr-real")
    ids.add("same", "same")  # equal values record nothing
    doc = {"target": "cr-0aa", "policy": '{"Resource": "arn:aws:ec2:us-east-1:111111111111:capacity-reservation/cr-0aa"}',
           "list": ["cr-0aa", 3, None], "other": "cr-0ab"}
    assert ids.substitute(doc) == {
        "target": "cr-real", "policy": '{"Resource": "arn:aws:ec2:us-east-1:111111111111:capacity-reservation/cr-real"}',
        "list": ["cr-real", 3, None], "other": "cr-0ab"}
    assert len(ids) == 2
    with pytest.raises(ValueError, match="applied twice"):
        ids.add("cr-0aa", "cr-other")
