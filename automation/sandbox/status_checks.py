"""EC2 status checks the sandbox can fail. moto reports every running instance's system and
instance checks ``ok``; ``POST /_gpufleet/instance-status`` marks one check of one instance
``impaired`` (as AWS does when the host or the instance's OS stops answering its reachability
probe), until it is set back to ``ok`` or the sandbox is reset or restored.

The answer keeps AWS's shape (DescribeInstanceStatus, ``InstanceStatus`` / ``SystemStatus``: a
``Status`` and its ``reachability`` detail); a stopped instance stays ``not-applicable``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

CHECKS = ("system", "instance")
STATUSES = ("ok", "impaired")


class StatusChecks:
    """Instance id -> the checks that fail; installed once into moto's Instance."""

    def __init__(self) -> None:
        self.impaired: dict[str, set[str]] = {}
        self.lock = threading.Lock()

    def set(self, spec: Any) -> dict[str, Any]:
        if not isinstance(spec, dict) or not str(spec.get("instanceId", "")).startswith("i-") \
                or spec.get("check") not in CHECKS or spec.get("status") not in STATUSES:
            raise ValueError('expected {"instanceId": "i-...", "check": "system"|"instance", "status": "ok"|"impaired"}')
        with self.lock:
            failing = self.impaired.setdefault(spec["instanceId"], set())
            (failing.add if spec["status"] == "impaired" else failing.discard)(spec["check"])
            return {"instanceId": spec["instanceId"], "impaired": sorted(failing)}

    def clear(self) -> None:
        with self.lock:
            self.impaired.clear()

    def fails(self, instance_id: str, check: str) -> bool:
        with self.lock:
            return check in self.impaired.get(instance_id, ())

    def install(self) -> None:
        from moto.ec2.models.instances import Instance

        for check in CHECKS:
            name = f"{check}_status"
            original = getattr(Instance, name).fget
            setattr(Instance, name, property(self._reporting(check, original)))

    def _reporting(self, check: str, original: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
        def status(instance: Any) -> dict[str, Any]:
            doc = original(instance)
            if doc.get("Status") == "ok" and self.fails(instance.id, check):
                return {"Status": "impaired", "Details": [{"Name": "reachability", "Status": "failed"}]}
            return doc
        return status
