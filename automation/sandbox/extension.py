"""The WSGI layer in front of moto: extra actions, server-side faults, a request log, control.

Every AWS request is identified (service and region from the SigV4 credential scope, CloudWatch's
``monitoring`` signing name read as ``cloudwatch``; action from the query ``Action``, the JSON
``X-Amz-Target``, the RPC v2 CBOR path or the REST path; account from the access key the way moto
maps it), logged, and then either

- answered with an injected fault in the service's own wire format (XML for the EC2, Auto Scaling,
  STS and IAM query APIs, JSON for DynamoDB and RAM), serialized by moto's botocore-model serializers;
- answered by the capacity emulator (capacity reservations, placement groups, scaling activities,
  RAM AssociateResourceShare);
- or passed to moto, with the capacity hooks active.

Control endpoints under ``/_gpufleet/`` (JSON): ``GET health``, ``GET|DELETE requests``,
``GET|POST|DELETE faults``, ``POST reset`` (``{"state": true}`` also wipes every account), ``POST snapshot``
(remember every account as it is), ``POST restore`` (back to the snapshot; clears log and faults),
``GET reservations``, ``POST probe`` (run the node health code for an emulated instance:
automation/sandbox/node_probe.py), ``GET probes`` (every probe answered), ``POST instance-status`` (fail an EC2 status check:
automation/sandbox/status_checks.py),
``GET|POST interruptions`` (the interruption warnings of reclaimed interruptible reservations; POST
``{"warningSeconds": N}`` sets how long a warned instance runs, 120 s by default: automation/sandbox/interruptible.py),
``GET iam`` (enforced or not, and the requests IAM denied since the log was
cleared: service, action, account, iam_action, code, message), ``POST iam`` (``{"enforce": true}``: authorize every request, automation/sandbox/iam_enforce.py).
"""

from __future__ import annotations

import http
import io
import itertools
import json
import os
import re
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs

from gpufleet.automation.sandbox import (
    iam_enforce,
    iam_requests,
    managed_policies,
    prometheus_api,
    warmup,
)
from gpufleet.automation.sandbox.capacity import CapacityEmulator, EmulatedError
from gpufleet.automation.sandbox.iam_eval import Request
from gpufleet.automation.sandbox.interruptible import WARNING_S
from gpufleet.automation.sandbox.node_probe import NodeProbeRunner, UnknownInstance
from gpufleet.automation.sandbox.snapshot import Snapshot
from gpufleet.automation.sandbox.status_checks import StatusChecks

CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
SIGNED_AS = {"monitoring": "cloudwatch"}
"""Services whose SigV4 signing name is not their name in the service model and the IAM actions."""
MODEL_OF = {"aps": "amp"}
"""Services whose signing name and IAM prefix (``aps``) is not their service model's name (``amp``)."""
RPC_V2_PATH = re.compile(r"^/service/[^/]+/operation/([A-Za-z0-9]+)$")
"""Smithy RPC v2 CBOR (CloudWatch's protocol in current SDKs): the operation is in the path."""
CONTROL = "/_gpufleet/"
LOG_LIMIT = 200_000
READ_ONLY = ("Describe", "Get", "List", "Query", "Scan", "BatchGet")

# (error kind, service) -> (code, HTTP status): what each service really answers.
FAULT_CODES: dict[str, dict[str, tuple[str, int]]] = {
    "Throttling": {
        "ec2": ("RequestLimitExceeded", 503), "dynamodb": ("ThrottlingException", 400),
        "ram": ("ThrottlingException", 429), "*": ("Throttling", 400),
    },
    "InternalError": {
        "ec2": ("InternalError", 500), "dynamodb": ("InternalServerError", 500),
        "ram": ("ServerInternalException", 500), "iam": ("ServiceFailure", 500),
        "*": ("InternalFailure", 500),
    },
    "InsufficientInstanceCapacity": {"*": ("InsufficientInstanceCapacity", 500)},
}
MESSAGES = {
    "Throttling": "Rate exceeded",
    "InternalError": "We encountered an internal error. Please try again.",
    "InsufficientInstanceCapacity": "We currently do not have sufficient capacity in the Availability Zone you requested.",
}

warnings.filterwarnings("ignore", message=r"Exception\(.*\) with code .* does not match an error shape")


@dataclass
class Fault:
    """An error the server answers instead of the real call, ``remaining`` more times."""

    id: int
    service: str
    """Signing name: ec2, autoscaling, sts, iam, dynamodb, ram."""
    action: str
    """API action (RunInstances, SetDesiredCapacity, PutItem, ...) or ``*``."""
    error: str
    """Throttling, InternalError, InsufficientInstanceCapacity, or any error code."""
    remaining: int
    account: str | None = None
    """Only requests made in this account; None: any."""
    status: int | None = None
    """HTTP status for a raw error code (default 400)."""
    message: str | None = None

    def matches(self, call: Call) -> bool:
        return (self.service == call.service and self.action in ("*", call.action)
                and self.account in (None, call.account))

    @property
    def launches_only(self) -> bool:
        """Insufficient capacity on Auto Scaling: the call succeeds, its launches fail."""
        return self.error == "InsufficientInstanceCapacity" and self.service == "autoscaling"


@dataclass
class Call:
    service: str
    action: str
    region: str
    account: str
    body: bytes
    form: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    path: str = "/"
    access_key: str = ""
    """The SigV4 signing key (its session token is in ``headers``)."""


class ServiceModels:
    """botocore service models, parsers and serializers, loaded once per service."""

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}
        self._rest_paths: dict[str, dict[tuple[str, str], str]] = {}

    def model(self, service: str) -> Any:
        if service not in self._models:
            from moto.core.utils import get_service_model

            self._models[service] = get_service_model(MODEL_OF.get(service, service))
        return self._models[service]

    def rest_action(self, service: str, method: str, path: str) -> str:
        if service not in self._rest_paths:
            model = self.model(service)
            self._rest_paths[service] = {
                (op.http["method"], op.http["requestUri"].split("?")[0].rstrip("/").lower()): name
                for name in model.operation_names for op in [model.operation_model(name)]
            }
        return self._rest_paths[service].get((method, path.rstrip("/").lower()), "")

    def parse(self, call: Call) -> dict[str, Any]:
        from moto.core.parse import PROTOCOL_PARSERS
        from werkzeug.datastructures import MultiDict

        model = self.model(call.service)
        operation = model.operation_model(call.action)
        values = MultiDict([(k, v) for k, vs in call.form.items() for v in vs])
        return PROTOCOL_PARSERS[model.protocol](operation).parse({
            "body": call.body, "headers": call.headers, "method": call.method, "url_params": {},
            "url_path": call.path, "values": values,
        })

    def serialize(self, call: Call, result: Any, status: int | None = None) -> tuple[int, dict[str, str], bytes]:
        from botocore.model import OperationModel
        from moto.core.serialize import get_serializer_class

        model = self.model(call.service)
        try:
            operation = model.operation_model(call.action)
        except Exception:
            operation = OperationModel({"name": call.action}, model)
        serializer = get_serializer_class(model.service_name, model.protocol)(operation)
        out = serializer.serialize(result)
        headers = {k: v for k, v in out["headers"].items()}
        headers["x-amzn-RequestId"] = str(uuid.uuid4())
        body = out["body"]
        return status or out["status_code"], headers, body.encode() if isinstance(body, str) else body


class EmulatorExtension:
    """WSGI middleware wrapping moto's application (see the module docstring)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], capacity: CapacityEmulator | None = None,
                 default_account: str = "111111111111") -> None:
        self.app = app
        self.default_account = default_account
        self.capacity = capacity or CapacityEmulator()
        self.capacity.install()
        managed_policies.install()
        self.snapshot = Snapshot(self.capacity)
        self.warming: threading.Thread | None = None
        self.models = ServiceModels()
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self.faults: list[Fault] = []
        self._seq = itertools.count(1)
        self._fault_ids = itertools.count(1)
        self.mutations = 0
        """Calls that may have changed an account since the last snapshot was taken or restored (a
        wipe counts as one); the log can be cleared without touching it."""
        self._log_lock = threading.Lock()
        self.started = time.time()
        self.node_probes = NodeProbeRunner()
        self.status_checks = StatusChecks()
        """EC2 status checks a test failed (automation/sandbox/status_checks.py)."""
        self.status_checks.install()
        self.enforce_iam = False
        """Authorize every AWS request against the caller's IAM policies (automation/sandbox/iam_enforce.py)."""
        self.denials: deque[dict[str, Any]] = deque(maxlen=10_000)
        """Requests IAM denied since the log was last cleared."""

    # ---- WSGI ---------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path.startswith(CONTROL):
            return self._control(environ, start_response, path[len(CONTROL):].strip("/"))
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size) if size else b""
        environ["wsgi.input"] = io.BytesIO(body)
        call = self._identify(environ, body)
        if call is None:
            return self.app(environ, start_response)
        began = time.monotonic()
        with self.capacity.lock:
            if call.service == "aps" and call.action == prometheus_api.ACTION:
                status, headers, chunks, fault = self._query_metrics(call, environ)
            else:
                status, headers, chunks, fault = self._serve(call, environ)
        self._record(call, status, fault, time.monotonic() - began)
        start_response(f"{status} {http.HTTPStatus(status).phrase}", list(headers.items()))
        return chunks

    def _authorize(self, call: Call) -> tuple[int, dict[str, str], list[bytes], str | None] | None:
        """None when IAM allows the call (or is not enforced); else the service's denial."""
        if not self.enforce_iam:
            return None
        try:
            caller = iam_enforce.principal_of(call.access_key, call.headers.get("X-Amz-Security-Token"), call.account)
            if caller.deployer:
                return None
            try:
                params = self.models.parse(call) if call.action else {}
            except Exception:  # noqa: BLE001 - a call the models cannot parse is authorized on ``*``
                params = {}
            requests = iam_requests.requests_for(call.service, call.action, call.account, call.region, params)
            iam_enforce.authorize(caller, requests, call.service, external_id=params.get("ExternalId"))
        except iam_enforce.Denied as denied:
            s, h, b = self.models.serialize(call, EmulatedError(denied.code, denied.message), denied.status)
            with self._log_lock:
                self.denials.append({"service": call.service, "action": call.action, "account": call.account,
                                     "iam_action": denied.action, "code": denied.code, "message": denied.message})
            return s, h, [b], denied.code
        return None

    def _serve(self, call: Call, environ: dict[str, Any]) -> tuple[int, dict[str, str], list[bytes], str | None]:
        fault = self._take_fault(call)
        if fault is not None and not fault.launches_only:
            # An injected fault stands for the service's whole answer, its authorization included.
            kind = FAULT_CODES.get(fault.error, {})
            code, status = kind.get(call.service) or kind.get("*") or (fault.error, fault.status or 400)
            message = fault.message or MESSAGES.get(fault.error, f"Injected fault {fault.error}")
            s, h, b = self.models.serialize(call, EmulatedError(code, message), fault.status or status)
            return s, h, [b], code
        denial = self._authorize(call)
        if denial is not None:
            return denial
        ctx = self.capacity.context
        ctx.account, ctx.region, ctx.params = call.account, call.region, None
        ctx.capacity_faults = 1 if fault is not None else 0
        try:
            self.capacity.settle_reclaims()  # interruptible reclaims whose warning ran out
            handler = self.capacity.HANDLERS.get((call.service, call.action))
            if handler is not None:
                result = getattr(self.capacity, handler)(call.account, call.region, self.models.parse(call))
                s, h, b = self.models.serialize(call, result)
                return s, h, [b], None
            if (call.service, call.action) == ("ec2", "RunInstances"):
                ctx.params = self.models.parse(call)
                self.capacity.check_run_instances(call.account, call.region, ctx.params)
            status, headers, chunks = self._forward(environ)
            if fault is None and call.service in ("ec2", "autoscaling", "ram") and not call.action.startswith(READ_ONLY):
                # Groups short of their desired size retry their launches (later calls, as the service would).
                self.capacity.reconcile()
            return status, headers, chunks, "InsufficientInstanceCapacity" if fault is not None else None
        except EmulatedError as error:
            s, h, b = self.models.serialize(call, error, error.status)
            return s, h, [b], error.code
        finally:
            ctx.params, ctx.capacity_faults = None, 0

    def _query_metrics(self, call: Call, environ: dict[str, Any]) -> tuple[int, dict[str, str], list[bytes], str | None]:
        """Managed Prometheus's query API, which moto does not serve (automation/sandbox/prometheus_api.py)."""
        query = prometheus_api.parse(call.method, call.path, environ.get("QUERY_STRING", ""), call.body,
                                     environ.get("CONTENT_TYPE", ""))
        assert query is not None  # _identify named the action from the same path

        def authorize(arn: str) -> str | None:
            if not self.enforce_iam:
                return None
            caller = iam_enforce.principal_of(call.access_key, call.headers.get("X-Amz-Security-Token"), call.account)
            try:
                iam_enforce.authorize(caller, [Request(f"aps:{call.action}", arn)], call.service)
            except iam_enforce.Denied as denied:
                with self._log_lock:
                    self.denials.append({"service": call.service, "action": call.action, "account": call.account,
                                         "iam_action": denied.action, "code": denied.code, "message": denied.message})
                return denied.message
            return None

        status, headers, body = prometheus_api.answer(query, call.account, call.region, authorize)
        return status, headers, [body], headers.get("x-amzn-ErrorType")

    def _forward(self, environ: dict[str, Any]) -> tuple[int, dict[str, str], list[bytes]]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured["status"], captured["headers"] = status, headers

        chunks = list(self.app(environ, capture))
        return int(captured["status"].split()[0]), dict(captured["headers"]), chunks

    def _identify(self, environ: dict[str, Any], body: bytes) -> Call | None:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        match = CREDENTIAL.search(auth)
        if not match:
            return None
        access_key, region, service = match.groups()
        service = SIGNED_AS.get(service, service)
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        form: dict[str, list[str]] = {}
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "POST")
        rpc = RPC_V2_PATH.match(path)
        if target:
            action = target.rsplit(".", 1)[-1]
        elif rpc:
            action = rpc.group(1)
        elif service == "aps" and prometheus_api.QUERY_PATH.match(path):
            action = prometheus_api.ACTION
        elif "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", "") or environ.get("QUERY_STRING", "").find("Action=") >= 0:
            form = parse_qs(body.decode() or environ.get("QUERY_STRING", ""), keep_blank_values=True)
            action = form.get("Action", [""])[0]
        else:
            action = self.models.rest_action(service, method, path)
        account = self._account_of(access_key)
        if account is None:
            # Keys moto did not issue are the operator's own: the default (platform) account.
            account = self.default_account
            environ["HTTP_X_MOTO_ACCOUNT_ID"] = account
        return Call(service=service, action=action, region=region, account=account,
                    body=body, form=form, headers=headers, method=method, path=path, access_key=access_key)

    @staticmethod
    def _account_of(access_key: str) -> str | None:
        """The account whose IAM (or STS AssumeRole) issued the key, as moto maps it."""
        from moto.iam.models import iam_backends

        for account_id, partitions in list(iam_backends.items()):
            for backend in list(partitions.values()):
                if access_key in backend.access_keys:
                    return account_id
        return None

    # ---- faults and the log -------------------------------------------------------------------

    def _take_fault(self, call: Call) -> Fault | None:
        with self._log_lock:
            for fault in self.faults:
                if fault.matches(call):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _record(self, call: Call, status: int, fault: str | None, seconds: float) -> None:
        with self._log_lock:
            if call.service != "sts" and not call.action.startswith(READ_ONLY):
                self.mutations += 1
            self.log.append({"seq": next(self._seq), "time": time.time(), "service": call.service,
                             "action": call.action, "account": call.account, "region": call.region,
                             "status": status, "error": fault, "ms": round(seconds * 1000, 2)})

    def add_fault(self, spec: dict[str, Any]) -> Fault:
        for key in ("service", "action", "error"):
            if not isinstance(spec.get(key), str) or not spec[key]:
                raise ValueError(f"fault needs a non-empty string `{key}`")
        count = spec.get("count", 1)
        if not isinstance(count, int) or count < 1:
            raise ValueError("fault `count` must be a positive integer")
        fault = Fault(id=next(self._fault_ids), service=spec["service"], action=spec["action"],
                      error=spec["error"], remaining=count, account=spec.get("account"),
                      status=spec.get("status"), message=spec.get("message"))
        with self._log_lock:
            self.faults.append(fault)
        return fault

    def start_warm_up(self) -> None:
        """Pay moto's first-call costs in the background (automation/sandbox/warmup.py)."""
        self.warming = warmup.start(self.app, self.capacity.lock)

    def take_snapshot(self) -> None:
        if self.warming is not None:
            self.warming.join(timeout=60)  # its scratch account must not be in the snapshot
        with self.capacity.lock:
            self.snapshot.take()
            with self._log_lock:
                self.mutations = 0

    def restore_snapshot(self) -> None:
        with self.capacity.lock:
            self.snapshot.restore()
            self.status_checks.clear()
            self.capacity.interruption_warning_s = WARNING_S
            with self._log_lock:
                self.log.clear()
                self.denials.clear()
                self.faults.clear()
                self.mutations = 0

    def reset(self, state: bool) -> None:
        with self._log_lock:
            self.log.clear()
            self.denials.clear()
            self.faults.clear()
        if state:
            from moto.moto_api._internal.models import moto_api_backend

            with self.capacity.lock:
                moto_api_backend.reset()
                self.capacity.reset()
                self.status_checks.clear()
                with self._log_lock:
                    self.mutations += 1

    # ---- control endpoints --------------------------------------------------------------------

    def _control(self, environ: dict[str, Any], start_response: Callable[..., Any], name: str) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        size = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(size) if size else b""
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            spec = json.loads(raw) if raw else {}
            status, payload = self._control_action(method, name, spec, query)
        except (ValueError, TypeError) as err:
            status, payload = 400, {"error": str(err)}
        body = json.dumps(payload, default=str).encode()
        start_response(f"{status} {http.HTTPStatus(status).phrase}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def _control_action(self, method: str, name: str, spec: Any, query: dict[str, list[str]]) -> tuple[int, Any]:
        if (method, name) == ("GET", "health"):
            return 200, {"ok": True, "pid": os.getpid(), "started": self.started, "requests": len(self.log),
                         "mutations": self.mutations}
        if (method, name) == ("GET", "requests"):
            since = int(query.get("since", ["0"])[0])
            with self._log_lock:
                return 200, {"requests": [r for r in self.log if r["seq"] > since]}
        if (method, name) == ("GET", "iam"):
            with self._log_lock:
                return 200, {"enforce": self.enforce_iam, "denials": list(self.denials)}
        if (method, name) == ("POST", "iam"):
            if not isinstance(spec, dict) or not isinstance(spec.get("enforce"), bool):
                raise ValueError("expected {\"enforce\": true|false}")
            self.enforce_iam = spec["enforce"]
            return 200, {"enforce": self.enforce_iam}
        if (method, name) == ("DELETE", "requests"):
            with self._log_lock:
                self.log.clear()
                self.denials.clear()
            return 200, {"ok": True}
        if (method, name) == ("GET", "faults"):
            with self._log_lock:
                return 200, {"faults": [asdict(f) for f in self.faults]}
        if (method, name) == ("POST", "faults"):
            if not isinstance(spec, dict):
                raise ValueError("expected a JSON object")
            return 200, {"fault": asdict(self.add_fault(spec))}
        if (method, name) == ("DELETE", "faults"):
            with self._log_lock:
                self.faults.clear()
            return 200, {"ok": True}
        if (method, name) == ("POST", "reset"):
            self.reset(bool(spec.get("state", False)) if isinstance(spec, dict) else False)
            return 200, {"ok": True}
        if (method, name) == ("POST", "snapshot"):
            self.take_snapshot()
            return 200, {"ok": True}
        if (method, name) == ("POST", "restore"):
            self.restore_snapshot()
            return 200, {"ok": True}
        if (method, name) == ("POST", "probe"):
            if not isinstance(spec, dict) or not isinstance(spec.get("instanceId"), str) \
                    or not isinstance(spec.get("argv"), list) or not all(isinstance(a, str) for a in spec["argv"]):
                raise ValueError('expected {"instanceId": "i-...", "argv": ["--tiers", ...]}')
            try:
                return 200, self.node_probes.run(spec["instanceId"], spec["argv"])
            except UnknownInstance:
                return 404, {"error": f"no live emulated instance {spec['instanceId']}"}
        if (method, name) == ("POST", "instance-status"):
            done = self.status_checks.set(spec)
            with self._log_lock:
                self.mutations += 1  # the next test's fixture restores (and clears it)
            return 200, done
        if (method, name) == ("GET", "probes"):
            return 200, {"probes": list(self.node_probes.runs)}
        if (method, name) == ("GET", "interruptions"):
            with self.capacity.lock:
                return 200, {"interruptions": list(self.capacity.interruptions),
                             "warningSeconds": self.capacity.interruption_warning_s}
        if (method, name) == ("POST", "interruptions"):
            if not isinstance(spec, dict) or not isinstance(spec.get("warningSeconds"), int | float) \
                    or not 0 <= spec["warningSeconds"] <= 3600:
                raise ValueError('expected {"warningSeconds": 0 to 3600}')
            with self.capacity.lock:
                self.capacity.interruption_warning_s = float(spec["warningSeconds"])
            return 200, {"warningSeconds": self.capacity.interruption_warning_s}
        if (method, name) == ("GET", "reservations"):
            with self.capacity.lock:
                return 200, {"reservations": self.capacity.summary()}
        return 404, {"error": f"no control endpoint {method} /_gpufleet/{name}"}
