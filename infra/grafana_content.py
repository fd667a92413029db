"""What Managed Grafana shows, as code: the Managed Prometheus and CloudWatch data sources and the
fleet dashboard (monitoring/dashboards/gpu-fleet.json), through pulumiverse-grafana.

The Grafana provider talks to the workspace's own HTTP API with a workspace service account token
that the program creates (``aws grafana create-workspace-service-account[-token]``: no hand-run
curl, no token in the stack file). AWS caps a token at 30 days; an update after that needs a new
token first: ``pulumi up --replace <the token's URN>`` (docs/monitoring.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi_aws import grafana as aws_grafana

__all__ = ["DASHBOARD_FILE", "GrafanaContent", "GrafanaContentArgs", "GrafanaProviderFactory", "dashboard_json"]

DASHBOARD_FILE = Path(__file__).resolve().parent.parent / "monitoring" / "dashboards" / "gpu-fleet.json"
PROMETHEUS_UID = "gpufleet-amp"
"""Stable uid of the Managed Prometheus data source (the dashboard's ``datasource`` variable default)."""
CLOUDWATCH_UID = "gpufleet-cloudwatch"
"""Stable uid of the CloudWatch data source (capacity reservation metrics of the platform account)."""
TOKEN_SECONDS = 30 * 24 * 3600
"""AWS's longest service account token lifetime."""

GrafanaProviderFactory = Callable[[str, pulumi.Input[str], pulumi.Input[str]], pulumi.ProviderResource]
"""Builds a Grafana provider from (name, url, token); made in stacks/__main__.py."""


@dataclass(frozen=True, kw_only=True)
class GrafanaContentArgs:
    workspace_id: pulumi.Input[str]
    """The Managed Grafana workspace."""
    endpoint: pulumi.Input[str]
    """Its endpoint (host name, no scheme)."""
    region: str
    """Region of the workspaces."""
    prometheus_endpoint: pulumi.Input[str]
    """The Managed Prometheus workspace's endpoint (``.../workspaces/ws-.../``)."""
    dashboard_file: Path = DASHBOARD_FILE
    """The dashboard JSON."""


def dashboard_json(path: Path = DASHBOARD_FILE) -> dict[str, Any]:
    """The dashboard as Grafana's API takes it, its data source variable defaulting to ours."""
    dashboard = json.loads(path.read_text())
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "datasource" and variable.get("query") == "prometheus":
            variable["current"] = {"text": "Amazon Managed Prometheus", "value": PROMETHEUS_UID}
    return dashboard


class GrafanaContent(pulumi.ComponentResource):
    """Outputs: ``prometheus_data_source_uid``, ``dashboard_uid``, ``dashboard_url``."""

    def __init__(self, name: str, args: GrafanaContentArgs, provider: GrafanaProviderFactory,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpufleet:monitoring:GrafanaContent", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        from pulumiverse_grafana import oss  # only the platform stack pays for the import

        # ADMIN: data sources need the Grafana Admin role; the account is used by the program only.
        account = aws_grafana.WorkspaceServiceAccount(
            f"{name}-provisioner", name="gpufleet-provisioner", grafana_role="ADMIN",
            workspace_id=args.workspace_id, opts=child)
        token = aws_grafana.WorkspaceServiceAccountToken(
            f"{name}-provisioner-token", name="gpufleet-provisioner", seconds_to_live=TOKEN_SECONDS,
            service_account_id=account.service_account_id, workspace_id=args.workspace_id,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["key"]))
        grafana = provider(f"{name}-grafana", pulumi.Output.concat("https://", args.endpoint),
                           pulumi.Output.secret(token.key))
        on_grafana = pulumi.ResourceOptions(parent=self, provider=grafana)

        # SigV4 with the workspace's IAM role (AMG's "workspace IAM role" auth is ec2_iam_role):
        # the role Monitoring gives the workspace may query the Prometheus workspace only.
        prometheus = oss.DataSource(
            f"{name}-prometheus", type="prometheus", name="Amazon Managed Prometheus", uid=PROMETHEUS_UID,
            url=pulumi.Output.from_input(args.prometheus_endpoint).apply(lambda url: url.rstrip("/")),
            is_default=True,
            json_data_encoded=json.dumps({"httpMethod": "POST", "sigV4Auth": True, "sigV4AuthType": "ec2_iam_role",
                                          "sigV4Region": args.region}),
            opts=on_grafana)
        oss.DataSource(
            f"{name}-cloudwatch", type="cloudwatch", name="CloudWatch (platform)", uid=CLOUDWATCH_UID,
            json_data_encoded=json.dumps({"authType": "ec2_iam_role", "defaultRegion": args.region}),
            opts=on_grafana)
        folder = oss.Folder(f"{name}-folder", title="gpufleet", uid="gpufleet", opts=on_grafana)
        dashboard = oss.Dashboard(
            f"{name}-dashboard", folder=folder.uid, overwrite=True,
            config_json=json.dumps(dashboard_json(args.dashboard_file), sort_keys=True),
            opts=pulumi.ResourceOptions(parent=self, provider=grafana, depends_on=[prometheus]))

        self.prometheus_data_source_uid = prometheus.uid
        self.dashboard_uid = dashboard.uid
        self.dashboard_url = dashboard.url
        self.register_outputs({"dashboardUid": self.dashboard_uid})
