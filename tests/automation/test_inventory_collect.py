"""`gpufleet inventory collect`: each stack's outputs from its Pulumi state, through the contract.

The states are Pulumi's own deployment format (a version-3 checkpoint whose ``pulumi:pulumi:Stack``
resource carries the outputs), holding what the real program exports (the reference stacks rendered
under mocks), in moto's S3 on 127.0.0.1 (the sandbox), in a local file backend, or as the files
``pulumi stack output --json`` and ``pulumi stack export`` write.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from gpufleet.automation.cli.main import app
from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.pulumi_state import SECRET_SIG, SECRET_SIG_KEY
from gpufleet.infra.contract import StackOutputs
from gpufleet.infra.offline.render import render_fleet
from gpufleet.infra.stackfile import discover_stacks, load_fleet
from tests.conftest import REPO

runner = CliRunner()
BUCKET = "gpufleet-state"
UPDATED = "2025-06-01T08:00:00.123456789Z"
STACKS = ("platform", "training", "inference")


@pytest.fixture(scope="module")
def exports() -> dict[str, dict]:
    """What the program exports for each reference stack."""
    return {r.spec.name: r.exports for r in render_fleet(load_fleet(discover_stacks(REPO / "stacks")))}


def deployment(stack: str, outputs: dict, time: str = UPDATED) -> dict:
    """A DeploymentV3 as the engine writes it: the stack resource, a provider, a resource."""
    urn = f"urn:pulumi:{stack}::gpufleet"
    return {"manifest": {"time": time, "magic": "0f0e5a3c8c4b7a9d", "version": "v3.170.0"},
            "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:AAAA:BBBB"}},
            "resources": [
                {"urn": f"{urn}::pulumi:pulumi:Stack::gpufleet-{stack}", "custom": False, "type": "pulumi:pulumi:Stack",
                 "outputs": outputs, "created": time, "modified": time},
                {"urn": f"{urn}::pulumi:providers:aws::aws", "custom": True, "id": "5b6c", "type": "pulumi:providers:aws",
                 "inputs": {"region": "us-east-1"}, "outputs": {"region": "us-east-1"},
                 "parent": f"{urn}::pulumi:pulumi:Stack::gpufleet-{stack}"},
            ]}


def checkpoint(stack: str, outputs: dict, time: str = UPDATED) -> dict:
    return {"version": 3, "checkpoint": {"stack": f"organization/gpufleet/{stack}",
                                         "latest": deployment(stack, outputs, time)}}


def collect(*args: str):
    return runner.invoke(app, ["inventory", "collect", "--stacks-dir", str(REPO / "stacks"), *args])


@pytest.fixture
def s3(sandbox):
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def put(s3, key: str, doc: dict, gz: bool = False) -> None:
    body = json.dumps(doc).encode()
    s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(body) if gz else body)


def test_from_an_s3_backend(sandbox, s3, exports, tmp_path):
    for stack in STACKS:  # training gzipped, as PULUMI_DIY_BACKEND_GZIP writes it
        gz = stack == "training"
        put(s3, f".pulumi/stacks/gpufleet/{stack}.json" + (".gz" if gz else ""), checkpoint(stack, exports[stack]), gz)
    path = tmp_path / "inventory.json"
    result = collect("--backend", f"s3://{BUCKET}", "--inventory", str(path), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert sorted((s["stack"], s["kind"], s["location"], s["updated_at"]) for s in doc["stacks"]) == sorted(
        (stack, "s3", f"s3://{BUCKET}/.pulumi/stacks/gpufleet/{stack}.json" + (".gz" if stack == "training" else ""),
         UPDATED) for stack in STACKS)
    assert {s["stack"]: (s["pools"], s["node_groups"]) for s in doc["stacks"]} == {
        "platform": (2, 0), "training": (0, 2), "inference": (0, 1)}
    written = json.loads(path.read_text())
    assert written["version"] == 1 and written["collectedAt"] == doc["collected_at"]
    assert written["stacks"] == exports  # the program's exports, unchanged by the round trip
    inventory = load_inventory(path)
    assert inventory.sources["inference"].updated_at == UPDATED
    assert [g.group.asg_name for g in inventory.groups_of("inference")] == [exports["inference"]["nodeGroups"][0]["asgName"]]


def test_the_backend_url_comes_from_pulumi_backend_url_with_a_prefix(sandbox, s3, exports, tmp_path, monkeypatch):
    for stack in STACKS:
        put(s3, f"states/.pulumi/stacks/gpufleet/{stack}.json", checkpoint(stack, exports[stack]))
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"s3://{BUCKET}/states?region=us-east-1")
    result = collect("--inventory", str(tmp_path / "inventory.json"))
    assert result.exit_code == 0, result.output
    assert load_inventory(tmp_path / "inventory.json").sources["platform"].location == (
        f"s3://{BUCKET}/states/.pulumi/stacks/gpufleet/platform.json")


def test_from_a_local_backend_and_from_files(exports, tmp_path):
    root = tmp_path / "state"
    (root / ".pulumi" / "stacks" / "gpufleet").mkdir(parents=True)
    (root / ".pulumi" / "stacks" / "gpufleet" / "platform.json").write_text(json.dumps(checkpoint("platform", exports["platform"])))
    outputs = tmp_path / "training.json"  # pulumi stack output --json -s training
    outputs.write_text(json.dumps({**exports["training"], "notInTheContract": "[secret]"}))
    exported = tmp_path / "inference.json"  # pulumi stack export -s inference
    exported.write_text(json.dumps({"version": 3, "deployment": deployment("inference", exports["inference"])}))
    path = tmp_path / "inventory.json"
    result = collect("--backend", f"file://{root}", "--stack", "platform", "--from-file", f"training={outputs}",
                     "--from-file", f"inference={exported}", "--inventory", str(path))
    assert result.exit_code == 0, result.output
    inventory = load_inventory(path)
    assert {name: (s.kind, s.location, s.updated_at) for name, s in inventory.sources.items()} == {
        "platform": ("file", f"{root}/.pulumi/stacks/gpufleet/platform.json", UPDATED),
        "training": ("outputs", str(outputs), None), "inference": ("outputs", str(exported), UPDATED)}
    assert {n: s.to_dict() for n, s in inventory.stacks.items()} == exports
    assert "training: from an outputs file; its last update is unknown" in result.stdout


def secret(ciphertext: str = "v1:abc:def") -> dict:
    return {SECRET_SIG_KEY: SECRET_SIG, "ciphertext": ciphertext}


def test_a_readable_secret_is_read_and_an_ignored_one_is_left(exports, tmp_path):
    root = tmp_path / "state" / ".pulumi" / "stacks" / "gpufleet"
    root.mkdir(parents=True)
    for stack in STACKS:
        outputs = dict(exports[stack], kubeconfig=secret())
        if stack == "training":  # pulumi stack export --show-secrets keeps the envelope, with the plaintext
            outputs["externalId"] = {SECRET_SIG_KEY: SECRET_SIG, "plaintext": json.dumps(outputs["externalId"])}
        (root / f"{stack}.json").write_text(json.dumps(checkpoint(stack, outputs)))
    result = collect("--backend", f"file://{tmp_path / 'state'}", "--inventory", str(tmp_path / "inventory.json"))
    assert result.exit_code == 0, result.output
    assert load_inventory(tmp_path / "inventory.json").stacks["training"].external_id == exports["training"]["externalId"]


def drop_stack_resource(doc: dict) -> None:
    doc["checkpoint"]["latest"]["resources"] = doc["checkpoint"]["latest"]["resources"][1:]


def drop_asg_name(doc: dict) -> None:
    del doc["checkpoint"]["latest"]["resources"][0]["outputs"]["nodeGroups"][0]["asgName"]


def encrypt_external_id(doc: dict) -> None:
    doc["checkpoint"]["latest"]["resources"][0]["outputs"]["externalId"] = secret()


BROKEN = {
    "no stack resource": (drop_stack_resource, "checkpoint.latest.resources", "no pulumi:pulumi:Stack resource"),
    "a partial node group": (drop_asg_name, "stacks.training.nodeGroups[0].asgName", "missing stack output"),
    "an older checkpoint": (lambda d: d.update(version=2), "version", "version-3 checkpoint"),
    "never deployed": (lambda d: d["checkpoint"].pop("latest"), "checkpoint.latest", "no deployment yet"),
    "no update time": (lambda d: d["checkpoint"]["latest"]["manifest"].pop("time"), "checkpoint.latest.manifest.time",
                       "time of the update"),
    "an encrypted output": (encrypt_external_id, "stacks.training.externalId", "a secret output"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_malformed_or_partial_state_exits_2_naming_the_stack_and_key(sandbox, s3, exports, tmp_path, case):
    edit, key, problem = BROKEN[case]
    for stack in STACKS:
        doc = checkpoint(stack, json.loads(json.dumps(exports[stack])))
        if stack == "training":
            edit(doc)
        put(s3, f".pulumi/stacks/gpufleet/{stack}.json", doc)
    path = tmp_path / "inventory.json"
    path.write_text("the previous inventory\n")
    result = collect("--backend", f"s3://{BUCKET}", "--inventory", str(path), "--json")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert f"s3://{BUCKET}/.pulumi/stacks/gpufleet/training.json: {key} = " in line and problem in line, line
    if case == "an encrypted output":
        assert "= '[secret]'" in line and "--show-secrets" in result.stderr
    assert json.loads(result.stdout)["error"]["code"] == 2
    assert path.read_text() == "the previous inventory\n"  # nothing half done


def test_a_stack_without_state_exits_2(sandbox, s3, exports, tmp_path):
    put(s3, ".pulumi/stacks/gpufleet/platform.json", checkpoint("platform", exports["platform"]))
    result = collect("--backend", f"s3://{BUCKET}", "--inventory", str(tmp_path / "inventory.json"))
    assert result.exit_code == 2, result.output
    assert "no Pulumi state for stack 'inference' of project 'gpufleet'" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--backend", "https://api.pulumi.com"], "not a self-managed backend"),
    (["--backend", "s3://"], "no bucket"),
    (["--from-file", "training"], "expected STACK=FILE"),
    ([], "no backend to read inference, platform, training from"),
])
def test_bad_flags_exit_2_before_any_read(sandbox, tmp_path, monkeypatch, args, message):
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    result = collect(*args, "--inventory", str(tmp_path / "inventory.json"))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert sandbox.requests() == [] and not (tmp_path / "inventory.json").exists()


def status_json(path: Path) -> dict:
    result = runner.invoke(app, ["status", "--json", "--inventory", str(path)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_help_names_the_sources():
    result = runner.invoke(app, ["inventory", "collect", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("--backend", "s3://<bucket>/<prefix>", "file://<dir>", "PULUMI_BACKEND_URL", "--from-file"):
        assert text in result.stdout, text


def test_status_and_rebalance_name_an_inventory_older_than_a_stack(sandbox, s3, tmp_path):
    # The sandbox's own fleet, collected from states in S3, so status can read it live. No Slurm or
    # Kubernetes answers here, and the sandbox's orchestrator stand-in is not part of a Pulumi state:
    # the states say `none`, as a stack with clusterKind none would export.
    fleet = sandbox.outputs()["stacks"]
    for outputs in fleet.values():
        for group in outputs.get("nodeGroups", []):
            group["orchestrator"] = "none"
    for stack, outputs in fleet.items():
        StackOutputs.from_dict(outputs, stack=stack, source="sandbox")
        put(s3, f".pulumi/stacks/gpufleet/{stack}.json", checkpoint(stack, outputs))
    path = tmp_path / "inventory.json"
    assert collect("--backend", f"s3://{BUCKET}", "--inventory", str(path)).exit_code == 0
    fresh = status_json(path)["inventory"]
    assert fresh["stale"] == [] and fresh["collected_at"] == load_inventory(path).collected_at

    later = "2099-01-01T00:00:00.5+00:00"  # someone ran `pulumi up -s training` after the collection
    put(s3, ".pulumi/stacks/gpufleet/training.json", checkpoint("training", fleet["training"], later))
    assert status_json(path)["inventory"]["stale"] == [
        {"stack": "training", "updated_at": later, "collected_update": UPDATED}]
    table = runner.invoke(app, ["status", "--inventory", str(path)], env={"COLUMNS": "250"})
    assert "OLDER than the last update of training" in table.stdout and "gpufleet inventory collect" in table.stdout
    dry = runner.invoke(app, ["rebalance", "--from", "training", "--to", "inference", "--nodes", "1",
                              "--inventory", str(path), "--json"])
    assert dry.exit_code == 0, dry.output
    assert [s["stack"] for s in json.loads(dry.stdout)["inventory"]["stale"]] == ["training"]


def test_the_table_names_the_state_folder_once_and_each_file_whole_at_80_columns(exports, tmp_path):
    root = tmp_path / "a-long-folder-name" / "state" / ".pulumi" / "stacks" / "gpufleet"
    root.mkdir(parents=True)
    for stack in STACKS:
        (root / f"{stack}.json").write_text(json.dumps(checkpoint(stack, exports[stack])))
    result = runner.invoke(app, ["inventory", "collect", "--stacks-dir", str(REPO / "stacks"), "--backend",
                                 f"file://{root.parents[2]}", "--inventory", str(tmp_path / "i.json")],
                           env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"state read from {root}/" in lines  # one line, whole, however long
    assert all(len(line) <= 80 for line in lines if not line.startswith(("state read from", "inventory ")))
    rows = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0] in STACKS}
    assert {s: rows[s][2] for s in STACKS} == {s: f"{s}.json" for s in STACKS}
    assert {rows[s][3] for s in STACKS} == {UPDATED[:19] + "Z"}
