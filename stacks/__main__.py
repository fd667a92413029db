"""The Pulumi program: one stack per environment, each in its own AWS account.

The only place providers are built. Config comes through ``pulumi.Config`` (the real CLI and the
offline renderer both feed it) and is validated by the typed loader, so errors name the stack file
and key.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws  # the package root only: submodules load lazily

# The project's virtualenv (Pulumi.yaml: .venv) has the gpufleet package installed (`make venv`).
from gpufleet.infra import program, stackfile
from gpufleet.infra.contract import StackOutputs
from gpufleet.infra.model import Role

STRUCTURED_KEYS = ("azIds", "network", "consumerAccounts", "pools", "nodeGroups", "storage", "eksPublicAccessCidrs", "schedule",
                   "healthGate")
"""Keys whose values arrive as JSON (arrays and objects)."""
BOOLEAN_KEYS = ("holdsPhi",)


def read_config() -> dict[str, object]:
    """The stack's config as the stack file holds it: ``{"gpufleet:role": ..., "aws:region": ...}``."""
    ours = pulumi.Config(stackfile.NS)
    raw: dict[str, object] = {}
    for short in sorted(stackfile.ALL_KEYS):
        if ours.get(short) is None:
            continue
        if short in STRUCTURED_KEYS:
            value: object = ours.get_object(short)
        elif short in BOOLEAN_KEYS:
            value = ours.get_bool(short)
        else:
            value = ours.get(short)
        raw[f"{stackfile.NS}:{short}"] = value
    region = pulumi.Config("aws").get("region")
    if region is not None:
        raw["aws:region"] = region
    return raw


def kubernetes_provider(name: str, kubeconfig: pulumi.Input[str]) -> pulumi.ProviderResource:
    """The provider for an EKS cluster's Kubernetes API, from the kubeconfig its component returns."""
    import pulumi_kubernetes as k8s  # only stacks with a cluster pay for the import

    return k8s.Provider(name, kubeconfig=kubeconfig, enable_server_side_apply=True)


def grafana_provider(name: str, url: pulumi.Input[str], token: pulumi.Input[str]) -> pulumi.ProviderResource:
    """The provider for the platform's Managed Grafana, with the service account token the program made."""
    import pulumiverse_grafana as grafana  # only the platform stack pays for the import

    return grafana.Provider(name, url=url, auth=token)


def main() -> None:
    stack = pulumi.get_stack()
    spec = stackfile.parse_stack(read_config(), name=stack, source=f"stacks/Pulumi.{stack}.yaml")
    provider = aws.Provider(
        f"aws-{spec.account_id}",
        region=spec.region,
        assume_roles=[aws.ProviderAssumeRoleArgs(role_arn=spec.deploy_role_arn,
                                                 session_name=f"gpufleet-{stack}")],
        allowed_account_ids=[spec.account_id],
        default_tags=aws.ProviderDefaultTagsArgs(tags=program.stack_tags(spec)),
    )
    opts = pulumi.ResourceOptions(providers=[provider])
    platform = None
    if spec.role is not Role.PLATFORM:
        # The platform's outputs are read through the contract, as every other reader reads them.
        ref = pulumi.StackReference(spec.platform_stack)
        platform = program.PlatformOutputs.of(ref.outputs.apply(lambda doc: StackOutputs.from_dict(
            doc, stack=spec.platform_stack.rsplit("/", 1)[-1], source=f"the outputs of {spec.platform_stack}")))
    outputs = program.compose(spec, platform, opts, kubernetes_provider=kubernetes_provider,
                              grafana_provider=grafana_provider)
    for key, value in outputs.to_dict().items():
        pulumi.export(key, value)


main()
