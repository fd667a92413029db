"""A stack's outputs as Pulumi keeps them: the state of a self-managed backend, or a file.

Pulumi's DIY backends keep one state file per stack, at ``<root>/.pulumi/stacks/<project>/
<stack>.json`` (``.json.gz`` when PULUMI_DIY_BACKEND_GZIP is set): the root is a bucket for
``s3://<bucket>[/<prefix>][?region=...]``, a directory for ``file://<dir>``. The file is a
versioned checkpoint (apitype.VersionedCheckpoint; CheckpointV3, DeploymentV3 in pulumi's
sdk/go/common/apitype/core.go)::

    {"version": 3, "checkpoint": {"stack": "organization/gpufleet/training",
      "latest": {"manifest": {"time": "2025-06-01T08:00:00.1+00:00", "magic": ..., "version": ...},
                 "resources": [{"urn": ..., "type": "pulumi:pulumi:Stack", "outputs": {...}}, ...]}}}

The ``pulumi:pulumi:Stack`` resource carries the stack's outputs; the manifest time is the stack's
last update. ``pulumi stack export`` writes the same deployment as ``{"version": 3, "deployment":
{manifest, resources}}``; ``pulumi stack output --json`` writes the outputs alone.

A secret output is ``{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
"ciphertext": ...}`` (``"plaintext"`` instead after ``--show-secrets``), and ``"[secret]"`` in
``pulumi stack output --json``: gpufleet never decrypts state, so an encrypted output that the
contract reads is reported by name, as bad input.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gpufleet.automation.aws import translate
from gpufleet.infra.contract import StackOutputs, camel
from gpufleet.infra.errors import BadInputError, ConfigError

SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
HIDDEN_SECRET = "[secret]"
"""How ``pulumi stack output --json`` shows a secret without --show-secrets."""
STACK_TYPE = "pulumi:pulumi:Stack"
CHECKPOINT_VERSION = 3
STATE_SUFFIXES = (".json", ".json.gz")
CONTRACT_KEYS = frozenset(camel(f.name) for f in dataclasses.fields(StackOutputs))
SHOW_SECRETS_HINT = ("make the output a plain one, or collect this stack with `--from-file STACK=FILE` "
                     "from `pulumi stack output --json --show-secrets -s STACK`")


@dataclass(frozen=True, kw_only=True)
class Backend:
    """A self-managed Pulumi backend."""

    kind: str
    """``s3`` or ``file`` (the inventory's source kinds)."""
    root: str
    """The bucket's key prefix (``""`` or ``prefix/``), or the directory."""
    bucket: str | None = None
    """S3 only."""
    region: str | None = None
    """S3 only: the ``region`` query parameter; None: the caller's default region."""
    profile: str | None = None
    """S3 only: the ``profile`` query parameter."""

    def keys(self, project: str, stack: str) -> list[str]:
        """Where the stack's state may be, in the order Pulumi would have written it."""
        base = f"{self.root}.pulumi/stacks/{project}/{stack}"
        return [base + suffix for suffix in STATE_SUFFIXES]

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}" if self.kind == "s3" else key


def parse_backend(url: str, flag: str = "--backend") -> Backend:
    """``s3://bucket[/prefix][?region=r&profile=p]`` or ``file://<dir>``; others are bad input."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise BadInputError(f"{flag} {url!r}: no bucket", "s3://<bucket>[/<prefix>]")
        query = urllib.parse.parse_qs(parsed.query)
        prefix = parsed.path.strip("/")
        return Backend(kind="s3", bucket=parsed.netloc, root=f"{prefix}/" if prefix else "",
                       region=(query.get("region") or [None])[0], profile=(query.get("profile") or [None])[0])
    if parsed.scheme == "file":
        # file://~/state, file:///abs/dir and file://relative/dir all name a directory.
        directory = Path((parsed.netloc + parsed.path) or ".").expanduser()
        return Backend(kind="file", root=f"{directory.as_posix().rstrip('/')}/")
    raise BadInputError(f"{flag} {url!r}: not a self-managed backend gpufleet reads",
                        "use s3://<bucket> or file://<dir>; from Pulumi Cloud, collect with "
                        "--from-file STACK=FILE of `pulumi stack output --json`")


@dataclass(frozen=True, kw_only=True)
class StackState:
    """One stack's outputs and how new they are."""

    outputs: Mapping[str, Any]
    """The outputs, secrets decoded where readable."""
    updated_at: str | None
    """The last update (the manifest time); None for ``pulumi stack output --json``."""
    location: str
    """Where they were read."""


def read_backend_state(backend: Backend, project: str, stack: str, *, s3: Any = None) -> StackState:
    """The stack's state from the backend (``s3``: a boto3 S3 client, for an S3 backend)."""
    for key in backend.keys(project, stack):
        state = read_state(backend.kind, backend.location(key), s3=s3)
        if state is not None:
            return state
    raise ConfigError(backend.location(backend.keys(project, stack)[0]), "(file)", None,
                      f"no Pulumi state for stack {stack!r} of project {project!r}",
                      "check --backend, --project and the stack name (`pulumi stack ls` lists them)")


def read_state(kind: str, location: str, *, s3: Any = None) -> StackState | None:
    """One state file (``s3://bucket/key`` or a path); None when it does not exist."""
    if kind == "s3":
        bucket, _, key = location.removeprefix("s3://").partition("/")
        raw = _read_s3(s3, bucket, key)
    else:
        raw = _read_file(Path(location))
    if raw is None:
        return None
    if location.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ConfigError(location, "(gzip)", None, f"not a gzip file: {err}") from None
    outputs, updated_at = parse_checkpoint(_json(raw, location), location)
    return StackState(outputs=outputs, updated_at=updated_at, location=location)


def _read_s3(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise translate(err, stack=f"s3://{bucket}", service="s3", operation="GetObject") from None
    except BotoCoreError as err:
        raise translate(err, stack=f"s3://{bucket}", service="s3", operation="GetObject") from None


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(str(path), "(file)", None, f"cannot read: {err.strerror}") from None


def _json(raw: bytes, location: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(location, "(json)", None, f"not valid JSON: {err}") from None


def parse_checkpoint(doc: Any, location: str) -> tuple[dict[str, Any], str | None]:
    """(outputs, last update) of a versioned checkpoint; ConfigError names the key."""
    if not isinstance(doc, Mapping):
        raise ConfigError(location, "(document)", None, "expected a Pulumi checkpoint object")
    version = doc.get("version")
    if version != CHECKPOINT_VERSION:
        raise ConfigError(location, "version", version, f"expected a version-{CHECKPOINT_VERSION} checkpoint",
                          "upgrade the stack's state with a current Pulumi CLI (`pulumi up` rewrites it)")
    checkpoint = _mapping(doc.get("checkpoint"), location, "checkpoint")
    latest = checkpoint.get("latest")
    if latest is None:
        raise ConfigError(location, "checkpoint.latest", None, "the stack has no deployment yet",
                          "run `pulumi up` on the stack first")
    return parse_deployment(latest, location, "checkpoint.latest")


def parse_deployment(deployment: Any, location: str, key: str) -> tuple[dict[str, Any], str | None]:
    deployment = _mapping(deployment, location, key)
    manifest = _mapping(deployment.get("manifest"), location, f"{key}.manifest")
    updated_at = manifest.get("time")
    if not isinstance(updated_at, str) or not updated_at:
        raise ConfigError(location, f"{key}.manifest.time", updated_at, "expected the time of the update")
    resources = deployment.get("resources") or []
    if not isinstance(resources, list):
        raise ConfigError(location, f"{key}.resources", type(resources).__name__, "expected a list")
    stacks = [i for i, r in enumerate(resources) if isinstance(r, Mapping) and r.get("type") == STACK_TYPE]
    if not stacks:
        raise ConfigError(location, f"{key}.resources", None, f"no {STACK_TYPE} resource: the state holds no outputs",
                          "run `pulumi up` on the stack first")
    index = stacks[0]
    outputs = resources[index].get("outputs") or {}
    return dict(_mapping(outputs, location, f"{key}.resources[{index}].outputs")), updated_at


def read_outputs_file(path: Path, stack: str) -> StackState:
    """``pulumi stack output --json`` (outputs alone) or ``pulumi stack export`` (a deployment)."""
    raw = _read_file(path)
    if raw is None:
        raise ConfigError(str(path), "(file)", None, f"no such file (--from-file {stack}={path})")
    doc = _json(raw, str(path))
    if isinstance(doc, Mapping) and "deployment" in doc and "version" in doc:
        if doc.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(str(path), "version", doc.get("version"),
                              f"expected a version-{CHECKPOINT_VERSION} deployment (pulumi stack export)")
        outputs, updated_at = parse_deployment(doc["deployment"], str(path), "deployment")
        return StackState(outputs=outputs, updated_at=updated_at, location=str(path))
    if not isinstance(doc, Mapping):
        raise ConfigError(str(path), "(document)", None, "expected the stack's outputs (pulumi stack output --json)")
    return StackState(outputs=dict(doc), updated_at=None, location=str(path))


def reveal(outputs: Mapping[str, Any], stack: str, location: str) -> dict[str, Any]:
    """The outputs with readable secrets decoded; an unreadable one the contract reads is a
    ConfigError naming the stack and key (one the contract ignores stays as it is)."""
    hidden: list[str] = []
    out = {key: _reveal(value, key, hidden) for key, value in outputs.items()}
    wanted = [path for path in hidden if path.split(".")[0].split("[")[0] in CONTRACT_KEYS]
    if wanted:
        raise ConfigError(location, f"stacks.{stack}.{wanted[0]}", HIDDEN_SECRET,
                          "a secret output, encrypted in the Pulumi state: gpufleet does not decrypt state"
                          + (f" (secret too: {', '.join(wanted[1:])})" if len(wanted) > 1 else ""),
                          SHOW_SECRETS_HINT)
    return out


def _reveal(value: Any, path: str, hidden: list[str]) -> Any:
    if isinstance(value, Mapping):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            if isinstance(value.get("plaintext"), str):
                try:
                    return _reveal(json.loads(value["plaintext"]), path, hidden)
                except json.JSONDecodeError:
                    pass
            hidden.append(path)
            return HIDDEN_SECRET
        return {k: _reveal(v, f"{path}.{k}", hidden) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v, f"{path}[{i}]", hidden) for i, v in enumerate(value)]
    if value == HIDDEN_SECRET:
        hidden.append(path)
    return value


def _mapping(value: Any, location: str, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(location, key, None if value is None else type(value).__name__, "expected an object")
    return value
