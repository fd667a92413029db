"""nodeadm user data of EKS nodes: a MIME document cloud-init and nodeadm both split into the same
two parts, and input that would make a node that cannot join (or joins unheld) refused up front."""

from __future__ import annotations

import email
import subprocess

import pytest
import yaml

from gpufleet.lifecycle.bootstrap.nodeadm import BOUNDARY, EksClusterParams, render_eks_user_data
from gpufleet.lifecycle.bootstrap.user_data import UserDataParams

CLUSTER = EksClusterParams(name="gpufleet-inference", api_server_endpoint="https://ABC.gr7.us-east-1.eks.amazonaws.com",
                           certificate_authority="LS0tLS1CRUdJTg==", service_cidr="172.20.0.0/16")
BOOTSTRAP = UserDataParams(bundle_uri="s3://bucket-lifecycle/lifecycle/0123456789ab/",
                           node_env_path="nodes/serve-h100.env", region="us-east-1")
HOLD = "gpufleet.io/unverified=true:NoSchedule"


def test_parts_are_the_node_config_then_a_bash_script(tmp_path):
    text = render_eks_user_data(CLUSTER, BOOTSTRAP, labels={"gpufleet.io/pool": "inference"}, taints=[HOLD])
    message = email.message_from_string(text)
    parts = [p for p in message.walk() if not p.is_multipart()]
    assert [p.get_content_type() for p in parts] == ["application/node.eks.aws", "text/x-shellscript"]
    config = yaml.safe_load(parts[0].get_payload())
    assert config["spec"]["cluster"]["cidr"] == "172.20.0.0/16"
    assert config["spec"]["kubelet"]["flags"] == ["--node-labels=gpufleet.io/pool=inference",
                                                  f"--register-with-taints={HOLD}"]
    script = tmp_path / "part.sh"
    script.write_text(parts[1].get_payload())
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert text.count(f"--{BOUNDARY}--") == 1


@pytest.mark.parametrize(("field", "value"), [
    ("api_server_endpoint", "http://ABC.eks.amazonaws.com"), ("service_cidr", "172.20.0.0/33"),
    ("certificate_authority", "not base64!"), ("name", "")])
def test_cluster_params_refuse_what_nodeadm_cannot_join_with(field, value):
    args = {"name": CLUSTER.name, "api_server_endpoint": CLUSTER.api_server_endpoint,
            "certificate_authority": CLUSTER.certificate_authority, "service_cidr": CLUSTER.service_cidr, field: value}
    with pytest.raises(ValueError, match=field):
        EksClusterParams(**args)


@pytest.mark.parametrize("taint", ["gpufleet.io/unverified=true", "gpufleet.io/unverified=true:NO_SCHEDULE", "a b:NoSchedule"])
def test_malformed_taints_are_refused(taint):
    with pytest.raises(ValueError, match="taint"):
        render_eks_user_data(CLUSTER, BOOTSTRAP, labels={}, taints=[taint])
