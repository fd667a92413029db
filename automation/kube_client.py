"""The one Kubernetes client of the control plane: which cluster a command talks to, chosen one
way everywhere (the rebalancer's adapter, ``gpufleet launch``, ``gpufleet jobs``), and API failures
as ``KubernetesError``.

The kube context (docs/eks.md, "Which cluster a command talks to"):

1. ``--context NAME`` when given: that context of the kubeconfig, or an error;
2. else the context named after the stack's cluster, ``gpufleet-<stack>`` (the name
   ``aws eks update-kubeconfig --name gpufleet-<stack> --alias gpufleet-<stack>`` gives it);
3. else, inside a pod (``KUBERNETES_SERVICE_HOST`` set and a service-account token mounted), the
   pod's own cluster;
4. else a ``BadInputError`` naming KUBECONFIG and the contexts it has.

The current context is never used on its own: a kubeconfig pointing at the wrong cluster must not
drain or launch there. KUBECONFIG is read when a client is made (the kubernetes library reads it
once, at import), with its usual meaning: paths joined by ``:``, unset is ``~/.kube/config``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gpufleet.infra.errors import BadInputError, KubernetesError

__all__ = ["KubeTarget", "api_client", "call", "choose", "context_for", "refusal"]

DEFAULT_KUBECONFIG = "~/.kube/config"
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
T = TypeVar("T")


def context_for(stack: str) -> str:
    """The kube context of a stack's EKS cluster: the cluster's own name."""
    return f"gpufleet-{stack}"


@dataclass(frozen=True, kw_only=True)
class KubeTarget:
    """Where a command's Kubernetes calls go."""

    context: str | None
    """The kubeconfig context; None: the pod's in-cluster config."""
    kubeconfig: str | None
    """The kubeconfig path(s) the context is from; None in-cluster."""
    reason: str
    """Which rule chose it: ``--context``, ``stack <name>``, or ``in-cluster``."""


def _kubeconfig(environ: Mapping[str, str]) -> tuple[str, str]:
    value = environ.get("KUBECONFIG") or ""
    if value:
        return value, f"KUBECONFIG={value}"
    return DEFAULT_KUBECONFIG, f"{DEFAULT_KUBECONFIG} (KUBECONFIG is unset)"


def _contexts(paths: str) -> list[str]:
    from kubernetes import config

    try:
        contexts, _ = config.list_kube_config_contexts(config_file=os.path.expanduser(paths))
    except (config.ConfigException, FileNotFoundError):
        return []  # no file, or a file without contexts
    return sorted(c["name"] for c in contexts)


def in_a_pod(environ: Mapping[str, str], token: Path = SERVICE_ACCOUNT_TOKEN) -> bool:
    """What the kubelet gives every pod: the API server's address, and a service-account token."""
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and token.exists()


def choose(stack: str | None, context: str | None = None, *, environ: Mapping[str, str] | None = None,
           token: Path = SERVICE_ACCOUNT_TOKEN) -> KubeTarget:
    """The cluster for a command about ``stack`` (None: no stack is known) or the ``--context``
    given; ``environ`` (KUBECONFIG, KUBERNETES_SERVICE_HOST) as read now, ``token`` where a pod's
    service-account token would be."""
    environ = os.environ if environ is None else environ
    paths, where = _kubeconfig(environ)
    known = _contexts(paths)
    listed = ", ".join(known) if known else "none"
    if context is not None:
        if context not in known:
            raise BadInputError(f"--context {context!r}: no such context in {where} (contexts: {listed})",
                                "name one of them, or point KUBECONFIG at the kubeconfig that has it")
        return KubeTarget(context=context, kubeconfig=paths, reason="--context")
    wanted = context_for(stack) if stack else None
    if wanted is not None and wanted in known:
        return KubeTarget(context=wanted, kubeconfig=paths, reason=f"stack {stack}")
    if in_a_pod(environ, token):
        return KubeTarget(context=None, kubeconfig=None, reason="in-cluster")
    looked_for = f"no kube context {wanted!r}" if wanted else "no --context given"
    raise BadInputError(
        f"{looked_for} in {where} (contexts: {listed}), and not running in a pod",
        (f"aws eks update-kubeconfig --name {wanted} --alias {wanted}, or pass --context NAME" if wanted
         else "pass --context NAME, or --stack STACK for the context gpufleet-STACK"))


def api_client(stack: str | None = None, context: str | None = None) -> Any:
    """An ApiClient of the official client for the cluster :func:`choose` picks."""
    from kubernetes import client, config

    target = choose(stack, context)
    try:
        if target.context is None:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        return config.new_client_from_config(config_file=os.path.expanduser(target.kubeconfig or ""),
                                             context=target.context)
    except config.ConfigException as err:
        raise BadInputError(f"kube context {target.context or 'in-cluster'} ({target.reason}): {err}",
                            "check the kubeconfig entry: its cluster, user and credentials") from None


def refusal(err: Any) -> str:
    """An ApiException as the API server put it: status, reason and the Status message, if any."""
    text = f"{err.status} {err.reason}"
    try:
        message = json.loads(err.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return f"{text}: {message}" if message else text


def call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One API call; a refusal or an unreachable server is a KubernetesError naming ``what``."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return fn(*args, **kwargs)
    except ApiException as err:
        raise KubernetesError(f"Kubernetes {what} failed: {refusal(err)}") from None
    except (HTTPError, OSError) as err:  # connection refused, TLS, DNS
        raise KubernetesError(f"Kubernetes {what} failed: {err}",
                              "is the API server reachable from here (endpoint access, VPN)?") from None
