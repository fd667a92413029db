"""A snapshot of the whole emulated AWS, to give each test the freshly applied fleet in milliseconds.

Applying the rendered program takes a few hundred AWS calls' worth of time; a test that changed
the fleet needs it back as it was. ``take`` deep-copies every moto backend in use (all accounts,
regions and services) together with the capacity emulator's state, in one copy so that references
between them (an Auto Scaling backend's EC2 backend, an instance's reservation mark) stay references
between the copies; ``restore`` drops every account of every service, as ``POST /_gpufleet/reset
{"state": true}`` does, and installs a fresh copy of the snapshot. moto's BackendDict objects themselves are never copied: the
copies go back into the same dictionaries every moto module reads.
"""

from __future__ import annotations

import copy
from typing import Any

from gpufleet.automation.sandbox.capacity import CapacityEmulator

CAPACITY_STATE = ("reservations", "placement_groups", "activities", "interruptions")
GLOBAL_STATE = ("bucket_accounts",)
"""State moto keeps on a BackendDict itself rather than in its accounts: S3's global bucket names
(bucket name -> owning account), which a restore must roll back with the buckets."""


class Snapshot:
    """At most one snapshot per server; callers hold the capacity lock."""

    def __init__(self, capacity: CapacityEmulator) -> None:
        self.capacity = capacity
        self._frozen: tuple[list[Any], list[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def taken(self) -> bool:
        return self._frozen is not None

    @staticmethod
    def _dicts() -> list[Any]:
        from moto.core.base_backend import BackendDict

        return list(BackendDict._instances)  # type: ignore[misc]

    @staticmethod
    def _memo(dicts: list[Any]) -> dict[int, Any]:
        # Anything that points at a BackendDict keeps pointing at the live one.
        return {id(d): d for d in dicts}

    def take(self) -> None:
        dicts = self._dicts()
        contents = [(dict(d), {a: getattr(d, a) for a in GLOBAL_STATE if hasattr(d, a)}) for d in dicts]
        state = {name: getattr(self.capacity, name) for name in CAPACITY_STATE}
        copied = copy.deepcopy((contents, state), self._memo(dicts))
        self._frozen = (dicts, copied[0], copied[1])

    def restore(self) -> None:
        if self._frozen is None:
            raise ValueError("no snapshot taken: POST /_gpufleet/snapshot first")
        from moto.core.base_backend import BackendDict, backend_lock
        from moto.core.model_instances import reset_model_data

        dicts, contents, state = self._frozen
        fresh_contents, fresh_state = copy.deepcopy((contents, state), self._memo(dicts))
        with backend_lock:
            # Drop every account of every service (those first used after the snapshot too); unlike
            # BackendDict.reset, do not rebuild the backends about to be replaced.
            for backend_dict in [*BackendDict._instances, *dicts]:  # type: ignore[misc]
                backend_dict.clear()
                for attribute in GLOBAL_STATE:
                    if hasattr(backend_dict, attribute):
                        getattr(backend_dict, attribute).clear()
            BackendDict._instances.clear()  # type: ignore[misc]
            reset_model_data()
            for backend_dict, (content, global_state) in zip(dicts, fresh_contents, strict=True):
                backend_dict.update(content)
                for attribute, value in global_state.items():
                    setattr(backend_dict, attribute, value)
                if backend_dict not in BackendDict._instances:  # type: ignore[misc]
                    BackendDict._instances.append(backend_dict)  # type: ignore[misc]
        for name, value in fresh_state.items():
            setattr(self.capacity, name, value)
