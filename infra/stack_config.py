"""A stack's config rebuilt from its validated spec, as its stack file's ``config:`` would hold it.

The offline renderer feeds it to the program; the scheduler function packages the platform's as
the stack file its pass reads (gpufleet.infra.scheduler_archive), so the function reads exactly
what the deployment validated, wherever the Pulumi CLI runs the program from.
"""

from __future__ import annotations

from typing import Any

import yaml

from gpufleet.infra.model import PoolSchedule, Role, StackSpec
from gpufleet.infra.stackfile import DAY_NAMES, NS

__all__ = ["config_of", "stack_file_text"]


def config_of(spec: StackSpec) -> dict[str, Any]:
    """The stack file's ``config:`` mapping that would produce ``spec`` (keys as in the file)."""
    raw: dict[str, Any] = {
        "aws:region": spec.region,
        f"{NS}:role": spec.role.value,
        f"{NS}:accountId": spec.account_id,
        f"{NS}:deployRoleArn": spec.deploy_role_arn,
        f"{NS}:azIds": list(spec.az_ids),
        f"{NS}:network": {"cidr": spec.network.cidr, "enableNat": spec.network.enable_nat},
        f"{NS}:clusterKind": spec.cluster_kind.value,
        f"{NS}:holdsPhi": spec.holds_phi,
        f"{NS}:ramSharing": spec.ram_sharing.value,
    }
    if spec.role is Role.PLATFORM:
        raw[f"{NS}:consumerAccounts"] = {role.value: account for role, account in spec.consumer_accounts.items()}
        raw[f"{NS}:pools"] = [
            {"name": p.name, "instanceType": p.instance_type, "azId": p.az_id, "count": p.count,
             "kind": p.kind.value, "shareWith": [r.value for r in p.share_with],
             **({"reservationId": p.reservation_id} if p.reservation_id else {}),
             **({"startTime": p.start_time, "endTime": p.end_time} if p.start_time else {}),
             **({"pricePerHourUsd": p.price_usd_per_hour} if p.price_usd_per_hour is not None else {}),
             **({"unusedBilledTo": p.unused_billed_to.value} if p.unused_billed_to else {})}
            for p in spec.pools]
        if spec.schedule:
            raw[f"{NS}:schedule"] = [_schedule(s) for s in spec.schedule]
    else:
        raw[f"{NS}:platformStack"] = spec.platform_stack
        raw[f"{NS}:nodeGroups"] = [
            {"name": g.name, "pool": g.pool, "instanceType": g.instance_type, "initialNodes": g.initial_nodes,
             "minNodes": g.min_nodes, "maxNodes": g.max_nodes, "enablePlacementGroup": g.enable_placement_group,
             **({"lentReservationId": g.lent_reservation_id} if g.lent_reservation_id else {})}
            for g in spec.node_groups]
        gate = spec.health_gate
        raw[f"{NS}:healthGate"] = {"probe": gate.probe.value, "tiers": list(gate.tiers), "dcgmLevel": gate.dcgm_level,
                                   "stragglerFailPct": gate.straggler_fail_pct}
        if spec.eks_public_access_cidrs:
            raw[f"{NS}:eksPublicAccessCidrs"] = list(spec.eks_public_access_cidrs)
        if spec.healer_image:
            raw[f"{NS}:healerImage"] = spec.healer_image
        if spec.storage is not None:
            raw[f"{NS}:storage"] = {
                "fsxCapacityGib": spec.storage.fsx_capacity_gib,
                "fsxThroughputPerTib": spec.storage.fsx_throughput_per_tib,
                "fsxImportPrefix": spec.storage.fsx_import_prefix, "fsxMountPath": spec.storage.fsx_mount_path}
    return raw


def _schedule(s: PoolSchedule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pool": s.pool, "inferenceNodesOutside": s.inference_nodes_outside, "trainingFloor": s.training_floor,
        "leadTimeMinutes": s.lead_time_minutes, "drainMinutes": s.drain_minutes,
        "windows": [{"days": [DAY_NAMES[d] for d in sorted(w.days)], "start": w.start.strftime("%H:%M"),
                     "end": w.end.strftime("%H:%M"), "timezone": w.timezone, "inferenceNodes": w.inference_nodes}
                    for w in s.windows]}
    if s.reactive is not None:
        r = s.reactive
        out["reactive"] = {"signal": r.signal.value, "upAbove": r.up_above, "downBelow": r.down_below,
                           "upMinutes": r.up_minutes, "downMinutes": r.down_minutes, "step": r.step,
                           "maxNodes": r.max_nodes}
    if s.lend is not None:
        out["lend"] = {"maxNodes": s.lend.max_nodes}
    return out


def stack_file_text(spec: StackSpec) -> str:
    """``Pulumi.<stack>.yaml`` for ``spec`` (config only: the stack file's comments are not kept)."""
    return yaml.safe_dump({"config": config_of(spec)}, sort_keys=True)
