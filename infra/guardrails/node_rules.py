"""Rules about how GPU nodes are launched, named and reach AWS, as AWS really builds them. Pure:
no pulumi import.

- ``ec2.imds-hop-limit``: a hop limit above 1 lets every pod read the node role's credentials.
- ``ec2.root-device-matches-image``: the root volume is mapped under the image's root device name.
- ``iam.conditions-match-node-groups``: the node-group names the operator policy's conditions test
  are the physical names of the stack's EKS node groups (EKS tags their Auto Scaling groups with them).
- ``vpc.endpoints-without-nat``: in a stack without a NAT path, every service a caller running
  there calls (gpufleet.infra.reachability) has an endpoint.
- ``images.phi-from-ecr``: nothing in a PHI account pulls a chart or an image from outside ECR.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from gpufleet.infra import reachability, registry_mirror
from gpufleet.infra.guardrails import policy_documents as docs
from gpufleet.infra.guardrails.linking import companions, identities, of_type
from gpufleet.infra.guardrails.model import (
    FleetContext,
    Resource,
    Rule,
    Scope,
    Severity,
    Unknown,
    Violation,
    get,
    peek,
)
from gpufleet.infra.guardrails.resource_rules import label
from gpufleet.infra.guardrails.stack_rules import operator_roles
from gpufleet.infra.image_family import (
    IMAGE_FAMILY_TAG,
    ImageFamily,
    family_of_eks_ami_type,
    family_of_image_id,
)

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
EKS_NODE_GROUP_TAG = "autoscaling:ResourceTag/eks:nodegroup-name"


def check_imds_hop_limit(resource: Resource, ctx: FleetContext) -> Iterator[str]:
    if get(resource, "metadataOptions.httpEndpoint", default="enabled") == "disabled":
        return
    limit = get(resource, "metadataOptions.httpPutResponseHopLimit", default=1)
    if not isinstance(limit, int) or limit != 1:
        yield (f"{label(resource)} sets metadataOptions.httpPutResponseHopLimit to {limit!r}: containers in "
               "their own network namespace (every pod) can then read the node role's credentials from IMDS. "
               "Set it to 1; pods get AWS credentials from EKS Pod Identity.")


def _expected_family(template: Resource, node_groups: Sequence[Resource]) -> tuple[ImageFamily, str] | None:
    """The family the template's nodes boot and what says so; None when nothing does."""
    for group in node_groups:
        if peek(group, "launchTemplate.id") in identities(template):
            ami_type = peek(group, "amiType")
            if isinstance(ami_type, str) and (family := family_of_eks_ami_type(ami_type)) is not None:
                return family, f"EKS node group {group.name} (amiType {ami_type})"
    image = peek(template, "imageId")
    if isinstance(image, str) and (family := family_of_image_id(image)) is not None:
        return family, f"imageId {image}"
    declared = peek(template, f"tags.{IMAGE_FAMILY_TAG}")
    if isinstance(declared, str) and declared in {f.value for f in ImageFamily}:
        return ImageFamily(declared), f"its custom AMI is of family {declared} (tag {IMAGE_FAMILY_TAG})"
    return None


def check_root_device(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    node_groups = of_type(resources, EKS_NODE_GROUP)
    for template in of_type(resources, LAUNCH_TEMPLATE):
        mappings = peek(template, "blockDeviceMappings")
        if not mappings or isinstance(mappings, Unknown):
            continue
        expected = _expected_family(template, node_groups)
        if expected is None:
            continue
        family, why = expected
        devices = [m.get("deviceName") for m in mappings if isinstance(m, dict) and m.get("ebs")]
        if family.root_device not in devices:
            yield Violation(resource=template.name, urn=template.urn, message=(
                f"LaunchTemplate {template.name} maps its volume as {', '.join(map(str, devices))}, but its nodes boot "
                f"{family.value} ({why}), whose root device is {family.root_device}: the node would get a stray "
                f"extra disk and keep the image's small root. Map the root volume as {family.root_device}."))


def check_node_group_names(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    groups = of_type(resources, EKS_NODE_GROUP)
    named = {get(g, "nodeGroupName") for g in groups if isinstance(peek(g, "nodeGroupName"), str)}
    for role in operator_roles(resources, ctx):
        for policy in companions(resources, role, "role", ROLE_POLICY):
            for st in docs.parse(get(policy, "policy"), f"RolePolicy {policy.name}"):
                wanted = st.condition_values(EKS_NODE_GROUP_TAG)
                missing = sorted(set(wanted) - named)
                if st.allows and missing and groups:
                    unnamed = [g.name for g in groups if peek(g, "nodeGroupName") is None]
                    yield Violation(resource=policy.name, urn=policy.urn, message=(
                        f"operator policy {policy.name} (statement {st.sid}) scales node groups whose "
                        f"eks:nodegroup-name is {', '.join(missing)}, but no EKS node group of stack "
                        f"{role.stack} has that name (named: {', '.join(sorted(named)) or 'none'}; auto-named: "
                        f"{', '.join(unnamed) or 'none'}). EKS tags each Auto Scaling group with the node group's "
                        "physical name, so every scale call would be denied. Set nodeGroupName to the stack "
                        "file's node-group name."))


NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"


def has_nat_path(resources: Sequence[Resource]) -> bool:
    """A NAT gateway and a route table sending the default route to one."""
    if not of_type(resources, NAT_GATEWAY):
        return False
    for table in of_type(resources, ROUTE_TABLE):
        for route in peek(table, "routes") or ():
            if isinstance(route, dict) and route.get("cidrBlock") == "0.0.0.0/0" and route.get("natGatewayId"):
                return True
    return False


def _shows(resource: Resource, evidence: reachability.Evidence) -> bool:
    if resource.type != evidence.type:
        return False
    if not evidence.prop:
        return True
    value = peek(resource, evidence.prop)
    return isinstance(value, str) and value.endswith(evidence.suffix)


IMAGE_BUILDER_INFRASTRUCTURE = "aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration"
INSTANCE_PROFILE = "aws:iam/instanceProfile:InstanceProfile"


def _outside_the_vpc(resources: Sequence[Resource]) -> set[object]:
    """Roles only Image Builder's build instances use where the configuration names no subnet:
    Image Builder launches those in the account's default VPC, not in this stack's."""
    profiles = {peek(c, "instanceProfileName") for c in of_type(resources, IMAGE_BUILDER_INFRASTRUCTURE)
                if not peek(c, "subnetId")}
    return {peek(p, "role") for p in of_type(resources, INSTANCE_PROFILE)
            if peek(p, "name") in profiles or p.outputs.get("name") in profiles}


def callers_in(resources: Sequence[Resource]) -> list[reachability.Caller]:
    elsewhere = _outside_the_vpc(resources)

    def runs_here(r: Resource) -> bool:
        role = peek(r, "role")
        return not (role and role in elsewhere)

    return [caller for caller, evidence in reachability.EVIDENCE.items()
            if any(_shows(r, e) and runs_here(r) for r in resources for e in evidence)]


def endpoint_services(resources: Sequence[Resource]) -> set[str]:
    found = set()
    for endpoint in of_type(resources, VPC_ENDPOINT):
        name = peek(endpoint, "serviceName")
        if isinstance(name, str) and name.startswith("com.amazonaws."):
            found.add(name.split(".", 3)[3] if name.count(".") >= 3 else "")
    return found


def check_endpoints_without_nat(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    if not resources or has_nat_path(resources):
        return
    have = endpoint_services(resources)
    stack = resources[0].stack
    for caller in callers_in(resources):
        for call in reachability.CALLS[caller]:
            if call.service not in have:
                yield Violation(resource=stack, message=(
                    f"stack {stack} has no NAT path, and {caller.value} calls {call.service} ({call.reason}), "
                    f"but the VPC has no endpoint com.amazonaws.<region>.{call.service}: the call times out. "
                    "Add the endpoint (Network renders one per service of gpufleet.infra.reachability)."))


HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
WORKLOAD_PREFIXES = ("kubernetes:core/v1:Pod", "kubernetes:apps/v1:", "kubernetes:batch/v1:")
IMAGE_KEYS = ("image", "repository", "registry")


def image_references(value: object, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, reference) of every image a values tree or pod spec names: ``image`` strings, and
    ``registry`` (or, without one, ``repository``) of an image block."""
    if isinstance(value, dict):
        block = {k: v for k, v in value.items() if k in IMAGE_KEYS and isinstance(v, str)}
        if "registry" in block:
            yield f"{path}.registry".lstrip("."), block["registry"]
        elif "repository" in block:
            yield f"{path}.repository".lstrip("."), block["repository"]
        elif "image" in block:
            yield f"{path}.image".lstrip("."), block["image"]
        for key, inner in value.items():
            if not isinstance(inner, str):
                yield from image_references(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from image_references(inner, f"{path}[{i}]")


def check_images_from_ecr(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    for resource in resources:
        if not ctx.is_phi(resource.account_id):
            continue
        found: list[tuple[str, str]] = []
        if resource.type == HELM_RELEASE:
            chart = peek(resource, "chart")
            repo = peek(resource, "repositoryOpts.repo")
            if isinstance(repo, str) and repo:
                found.append(("repositoryOpts.repo", repo))
            if isinstance(chart, str) and (chart.startswith("oci://") or "/" in chart or repo is None):
                found.append(("chart", chart))
            found += [(f"values.{p}", ref) for p, ref in image_references(peek(resource, "values") or {})]
        elif resource.type.startswith(WORKLOAD_PREFIXES):
            found += [(f"spec.{p}", ref) for p, ref in image_references(peek(resource, "spec") or {})]
        for prop, reference in found:
            if not registry_mirror.is_ecr(reference):
                yield Violation(resource=resource.name, urn=resource.urn, message=(
                    f"{label(resource)} in PHI account {resource.account_id} pulls {reference!r} ({prop}) from "
                    "outside ECR: the PHI VPC has no route to it, and nothing there may reach an upstream "
                    "registry. Point it at the platform's pull-through cache or chart repositories "
                    "(gpufleet.infra.registry_mirror)."))


RULES: tuple[Rule, ...] = (
    Rule(id="ec2.imds-hop-limit", severity=Severity.MANDATORY, scope=Scope.RESOURCE,
         summary="Launch templates keep the IMDSv2 hop limit at 1 (pods use Pod Identity).",
         fix="metadataOptions.httpPutResponseHopLimit: 1",
         types=(LAUNCH_TEMPLATE, "aws:ec2/instance:Instance"), check_resource=check_imds_hop_limit),
    Rule(id="ec2.root-device-matches-image", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="A launch template maps its root volume under the root device name of the image its nodes boot.",
         fix="derive the device name from the image family (AL2023: /dev/xvda, Ubuntu DLAMI: /dev/sda1)",
         check_stack=check_root_device),
    Rule(id="iam.conditions-match-node-groups", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="Node-group names in the operator policy's conditions are the physical names of the EKS node groups.",
         fix="name EKS node groups explicitly (nodeGroupName) with the stack file's names",
         check_stack=check_node_group_names),
    Rule(id="vpc.endpoints-without-nat", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="In a stack without a NAT path, every AWS service its callers call has a VPC endpoint.",
         fix="render the endpoints from gpufleet.infra.reachability (Network does)",
         check_stack=check_endpoints_without_nat),
    Rule(id="images.phi-from-ecr", severity=Severity.MANDATORY, scope=Scope.STACK,
         summary="In a PHI account every Helm chart and container image comes from ECR.",
         fix="use the platform's ECR pull-through cache and chart repositories (gpufleet.infra.registry_mirror)",
         check_stack=check_images_from_ecr),
)
