"""Another team's Pulumi program that uses two gpufleet components as a library: a private VPC
and an FSx for Lustre file system linked to its own encrypted dataset bucket (docs/components.md).

    pip install gpufleet; in Pulumi.yaml: runtime python, main: components_program.py
    pulumi config set aws:region us-east-1; pulumi config set research:accountId 123456789012
"""

import pulumi
import pulumi_aws as aws

from gpufleet.infra.lustre_storage import LustreStorage, LustreStorageArgs
from gpufleet.infra.network import Network, NetworkArgs

account_id = pulumi.Config("research").require("accountId")
region = aws.config.region or "us-east-1"
az_id = "use1-az4"

network = Network("research", NetworkArgs(cidr="10.40.0.0/20", az_ids=(az_id,), region=region,
                                          account_id=account_id))
corpora = LustreStorage("corpora", LustreStorageArgs(
    vpc_id=network.vpc_id, subnet_id=network.private_subnet_ids[az_id], account_id=account_id,
    region=region, fsx_capacity_gib=1200, fsx_throughput_per_tib=250, fsx_import_prefix="corpora/"))

pulumi.export("vpcId", network.vpc_id)
pulumi.export("fileSystemId", corpora.file_system_id)
pulumi.export("datasetBucket", corpora.bucket_name)
