"""Grafana as code in the rendered platform stack: a provider on the Managed Grafana workspace with a
service account token the program made, the Managed Prometheus data source with SigV4 through the
workspace role, the CloudWatch data source, and the fleet dashboard from its data file."""

from __future__ import annotations

import json

from gpufleet.infra import grafana_content


def _one(stack, type_token: str):
    [resource] = stack.of_type(type_token)
    return resource


def test_the_grafana_provider_uses_the_workspace_endpoint_and_the_programs_token(rendered_fleet):
    platform = rendered_fleet["platform"]
    workspace = _one(platform, "aws:grafana/workspace:Workspace")
    account = _one(platform, "aws:grafana/workspaceServiceAccount:WorkspaceServiceAccount")
    token = _one(platform, "aws:grafana/workspaceServiceAccountToken:WorkspaceServiceAccountToken")
    assert account.inputs["workspaceId"] == token.inputs["workspaceId"] == workspace.id
    assert token.inputs["serviceAccountId"] == account.outputs["serviceAccountId"]
    assert token.inputs["secondsToLive"] == grafana_content.TOKEN_SECONDS
    provider = _one(platform, "pulumi:providers:grafana")
    assert provider.inputs["url"] == f"https://{workspace.outputs['endpoint']}"
    # The token reaches the provider as a secret (Pulumi's secret envelope), never in plain state.
    auth = provider.inputs["auth"]
    assert auth["value"] == token.outputs["key"] and "4dabf18193072939515e22adb298388d" in auth
    for type_token in ("grafana:oss/dataSource:DataSource", "grafana:oss/dashboard:Dashboard",
                       "grafana:oss/folder:Folder"):
        for resource in platform.of_type(type_token):
            assert resource.provider and resource.provider.startswith(provider.urn), resource.urn
    # Consumers provision no Grafana content.
    for name in ("training", "inference"):
        assert not rendered_fleet[name].of_type("pulumi:providers:grafana")


def test_the_prometheus_data_source_signs_with_the_workspace_role(rendered_fleet):
    platform = rendered_fleet["platform"]
    sources = {s.inputs["uid"]: s for s in platform.of_type("grafana:oss/dataSource:DataSource")}
    assert set(sources) == {grafana_content.PROMETHEUS_UID, grafana_content.CLOUDWATCH_UID}
    prometheus = sources[grafana_content.PROMETHEUS_UID]
    amp = _one(platform, "aws:amp/workspace:Workspace")
    assert prometheus.inputs["type"] == "prometheus"
    assert prometheus.inputs["url"] == amp.outputs["prometheusEndpoint"].rstrip("/")
    assert json.loads(prometheus.inputs["jsonDataEncoded"]) == {
        "httpMethod": "POST", "sigV4Auth": True, "sigV4AuthType": "ec2_iam_role", "sigV4Region": "us-east-1"}
    cloudwatch = sources[grafana_content.CLOUDWATCH_UID]
    assert json.loads(cloudwatch.inputs["jsonDataEncoded"])["authType"] == "ec2_iam_role"
    # The workspace role may read what the data sources query.
    role_arn = _one(platform, "aws:grafana/workspace:Workspace").inputs["roleArn"]
    [role] = [r for r in platform.of_type("aws:iam/role:Role") if r.outputs["arn"] == role_arn]
    [policy] = [p for p in platform.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.id]
    actions = {a for s in json.loads(policy.inputs["policy"])["Statement"]
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"aps:QueryMetrics", "cloudwatch:GetMetricData"} <= actions


def test_the_dashboard_is_the_data_file_with_our_data_source_as_default(rendered_fleet):
    platform = rendered_fleet["platform"]
    dashboard = _one(platform, "grafana:oss/dashboard:Dashboard")
    folder = _one(platform, "grafana:oss/folder:Folder")
    assert dashboard.inputs["folder"] == folder.outputs["uid"]
    config = json.loads(dashboard.inputs["configJson"])
    assert config == grafana_content.dashboard_json()
    file = json.loads(grafana_content.DASHBOARD_FILE.read_text())
    assert config["panels"] == file["panels"] and config["annotations"] == file["annotations"]
    [variable] = [v for v in config["templating"]["list"] if v["type"] == "datasource"]
    assert variable["current"]["value"] == grafana_content.PROMETHEUS_UID
