"""gpufleet node images, baked by EC2 Image Builder in the platform account and shared with the
consumer accounts (launch permission by account id).

Per image kind (infra/node_image_plan.py): one Image Builder component per install step, a recipe
on the AWS GPU base image, an infrastructure configuration (a throwaway builder instance), a
distribution configuration that shares the AMI, a pipeline for rebuilds (manual: a new version is a
new ``pulumi up``), and the Image itself, built during the deployment, whose AMI id is published in
the platform's SSM parameter ``/gpufleet/node-image/<kind>/ami-id`` and in the stack's outputs.

Consumers do not read the platform's parameter across accounts (that needs an advanced-tier
parameter shared through RAM, read by ARN, one more cross-account path the PHI account would
allow). They read the AMI id from the platform's outputs, the path they already read pools
through, put the ami- id itself in their launch templates (resolved at deploy time: ``resolve:ssm:``
breaks with a root block device), and keep their own copy of the parameter.

Names carry the image's version (a digest of what it bakes), so each version is its own set of
immutable Image Builder resources; the AMI is tagged with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_aws import iam, imagebuilder, ssm

from gpufleet.infra.contract import NodeImageOutput
from gpufleet.infra.errors import ConfigError
from gpufleet.infra.model import StackSpec
from gpufleet.infra.node_image_plan import ImageKind, ImagePlan, image_plans, parameter_name
from gpufleet.infra.stackfile import NS

__all__ = ["NodeImages", "NodeImagesArgs", "consumer_node_image"]

BUILD_INSTANCE_TYPES = ("m7i.2xlarge",)
"""Baking needs no GPU: the drivers come with the base image; torch wheels are large, so CPU and disk."""
BUILD_VOLUME_GIB = 100
BUILDER_POLICIES = ("EC2InstanceProfileForImageBuilder", "AmazonSSMManagedInstanceCore")
"""Image Builder drives its builder instance through SSM (the platform account allows it)."""


@dataclass(frozen=True, kw_only=True)
class NodeImagesArgs:
    account_id: str
    """The platform account (builds and owns the AMIs)."""
    region: str
    """Region of the builds and the AMIs."""
    consumer_account_ids: Sequence[str]
    """Accounts allowed to launch the AMIs."""
    kinds: Sequence[ImageKind] = (ImageKind.EKS, ImageKind.SLURM)
    """Which images to bake."""
    subnet_id: pulumi.Input[str] | None = None
    """Subnet of the builder instance (it downloads packages: needs a way out); None: the default VPC."""
    security_group_ids: Sequence[pulumi.Input[str]] = ()
    """Security groups of the builder instance (with ``subnet_id``)."""

    def __post_init__(self) -> None:
        for account in self.consumer_account_ids:
            if not (len(account) == 12 and account.isdigit()):
                raise ValueError(f"consumer_account_ids: {account!r} is not a 12-digit account id")
        if not self.kinds:
            raise ValueError("kinds: bake at least one image")


class NodeImages(pulumi.ComponentResource):
    """Outputs: ``ami_ids`` (kind -> ami- id), ``versions`` (kind -> image version),
    ``parameter_names`` (kind -> SSM parameter)."""

    def __init__(self, name: str, args: NodeImagesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:compute:NodeImages", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        plans = image_plans()
        role = iam.Role(f"{name}-builder-role", assume_role_policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                    "Action": "sts:AssumeRole"}]}), opts=child)
        for policy in BUILDER_POLICIES:
            iam.RolePolicyAttachment(f"{name}-builder-{policy}", role=role.name,
                                     policy_arn=f"arn:aws:iam::aws:policy/{policy}", opts=child)
        profile = iam.InstanceProfile(f"{name}-builder-profile", role=role.name, opts=child)
        infrastructure = imagebuilder.InfrastructureConfiguration(
            f"{name}-infrastructure", name=f"{name}-builder", instance_profile_name=profile.name,
            instance_types=list(BUILD_INSTANCE_TYPES), subnet_id=args.subnet_id,
            security_group_ids=list(args.security_group_ids) or None, terminate_instance_on_failure=True,
            instance_metadata_options=imagebuilder.InfrastructureConfigurationInstanceMetadataOptionsArgs(
                http_tokens="required", http_put_response_hop_limit=1),
            opts=child)

        self.ami_ids: dict[ImageKind, pulumi.Output[str]] = {}
        self.versions: dict[ImageKind, str] = {}
        self.parameter_names: dict[ImageKind, str] = {}
        for kind in args.kinds:
            plan = plans[kind]
            image = self._image(name, plan, infrastructure, args, child)
            self.ami_ids[kind] = image.output_resources.apply(ami_of)
            self.versions[kind] = plan.version
            self.parameter_names[kind] = parameter_name(kind)
            ssm.Parameter(f"{name}-{kind.value}-ami-id", name=parameter_name(kind), type="String",
                          data_type="aws:ec2:image", insecure_value=self.ami_ids[kind],
                          description=f"gpufleet {kind.value} node image {plan.version}", opts=child)
        self.register_outputs({"amiIds": {k.value: v for k, v in self.ami_ids.items()}})

    @staticmethod
    def _image(name: str, plan: ImagePlan, infrastructure: imagebuilder.InfrastructureConfiguration,
               args: NodeImagesArgs, child: pulumi.ResourceOptions) -> imagebuilder.Image:
        prefix = f"{name}-{plan.kind.value}"
        label = f"gpufleet-{plan.kind.value}-{plan.version}"
        components = [
            imagebuilder.Component(f"{prefix}-{step.name}", name=f"{label}-{step.name}", platform="Linux",
                                   version="1.0.0", data=plan.component_document(step),
                                   description=f"infra/image_steps/{step.script}", opts=child)
            for step in plan.steps
        ]
        recipe = imagebuilder.ImageRecipe(
            f"{prefix}-recipe", name=label, version="1.0.0", parent_image=plan.parent_image,
            components=[imagebuilder.ImageRecipeComponentArgs(component_arn=c.arn) for c in components],
            block_device_mappings=[imagebuilder.ImageRecipeBlockDeviceMappingArgs(
                device_name=plan.root_device, ebs=imagebuilder.ImageRecipeBlockDeviceMappingEbsArgs(
                    volume_size=BUILD_VOLUME_GIB, volume_type="gp3", delete_on_termination="true"))],
            opts=child)
        # The snapshots stay under the default EBS encryption of the build: the consumers' launch
        # templates encrypt every root volume with their own key, and a CMK here would have to be
        # shared with every consumer account.
        distribution = imagebuilder.DistributionConfiguration(
            f"{prefix}-distribution", name=label,
            distributions=[imagebuilder.DistributionConfigurationDistributionArgs(
                region=args.region,
                ami_distribution_configuration=imagebuilder.DistributionConfigurationDistributionAmiDistributionConfigurationArgs(
                    name=f"{label}-{{{{ imagebuilder:buildDate }}}}",
                    ami_tags={"gpufleet:image-kind": plan.kind.value, "gpufleet:image-version": plan.version},
                    launch_permission=imagebuilder.DistributionConfigurationDistributionAmiDistributionConfigurationLaunchPermissionArgs(
                        user_ids=list(args.consumer_account_ids))))],
            opts=child)
        imagebuilder.ImagePipeline(
            f"{prefix}-pipeline", name=label, image_recipe_arn=recipe.arn,
            infrastructure_configuration_arn=infrastructure.arn, distribution_configuration_arn=distribution.arn,
            status="ENABLED", description=f"Rebuilds the gpufleet {plan.kind.value} node image {plan.version}",
            opts=child)
        return imagebuilder.Image(
            f"{prefix}-image", image_recipe_arn=recipe.arn, infrastructure_configuration_arn=infrastructure.arn,
            distribution_configuration_arn=distribution.arn,
            tags={"gpufleet:image-kind": plan.kind.value, "gpufleet:image-version": plan.version}, opts=child)


def ami_of(output_resources: Sequence[object] | None) -> str:
    """``output_resources[0].amis[0].image`` of an Image, as typed outputs or plain dicts."""
    for resource in output_resources or ():
        amis = getattr(resource, "amis", None) or (resource.get("amis") if isinstance(resource, dict) else None)
        for ami in amis or ():
            image = getattr(ami, "image", None) or (ami.get("image") if isinstance(ami, dict) else None)
            if image:
                return image
    raise ValueError(f"the image build produced no AMI: {output_resources!r}")


def consumer_node_image(spec: StackSpec, kind: ImageKind, node_images: pulumi.Input[Sequence[NodeImageOutput]],
                        opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
    """The ami- id of the platform's image of ``kind``, for a consumer's launch templates, and the
    consumer's own copy of its SSM parameter (same name as in the platform)."""
    def pick(images: Sequence[NodeImageOutput]) -> str:
        for image in images or ():
            if image.kind == kind.value:
                return image.ami_id
        raise ConfigError(spec.source, f"{NS}:platformStack", spec.platform_stack,
                          f"the platform stack exports no {kind.value} node image (nodeImages)",
                          "run `pulumi up` on the platform stack first")

    ami = pulumi.Output.from_input(node_images).apply(pick)
    ssm.Parameter(f"node-image-{kind.value}-ami-id", name=parameter_name(kind), type="String",
                  data_type="aws:ec2:image", insecure_value=ami,  # an AMI id is no secret
                  description=f"gpufleet {kind.value} node image, copied from {spec.platform_stack}", opts=opts)
    return ami
