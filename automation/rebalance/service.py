"""`gpufleet rebalance` as one call: check the flags, wire the executor, plan, run or resume.

Flags are checked against the inventory before any AWS client exists, so bad input exits 2
having called nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.automation.group_ref import NodeGroupRef
from gpufleet.automation.health.gate import PROBES, HealthGate, gate_choice, make_gate
from gpufleet.automation.health.node_probes import orchestrator_probes
from gpufleet.automation.inventory import DEFAULT_PATH, FleetInventory, load_inventory
from gpufleet.automation.inventory_age import InventoryAge, default_state_client, inventory_age
from gpufleet.automation.orchestrators.factory import for_group
from gpufleet.automation.rebalance.engine import Executor, Limits, Progress
from gpufleet.automation.rebalance.journal import CONTROL_FLOW, Journal, new_op_id
from gpufleet.automation.rebalance.plan import MovePlan, MoveRequest, resolve
from gpufleet.automation.rebalance.reservation import (
    check_reservation_request,
    involves_reservation,
)
from gpufleet.infra.errors import BadInputError
from gpufleet.lifecycle.health.results import Tier


@dataclass(frozen=True, kw_only=True)
class RebalanceArgs:
    from_role: str | None = None
    to_role: str | None = None
    nodes: int | None = None
    pool: str | None = None
    execute: bool = False
    """--yes: do it; otherwise print the plan only."""
    resume: str | None = None
    """Operation id to continue."""
    cancel: str | None = None
    """Operation id to roll back."""
    inventory: Path = DEFAULT_PATH
    probe: str | None = None
    """How the health gate reaches new nodes: orchestrator (where they live), ssm, local (this host
    stands in), none (unchecked). None: the destination stack's ``healthGate.probe`` for a new move,
    the journaled choice for --resume/--cancel."""
    gate_tiers: tuple[str, ...] | None = None
    """Health check tiers new nodes must pass (None: the stack's ``healthGate.tiers``, or the journaled choice)."""
    lease_s: float | None = None
    """How long the pool lease lasts without a heartbeat (None: the default, 120 s): a stopped or
    partitioned process is taken over that long after its last beat."""
    profile: str | None = None
    """AWS profile of the caller (None: AWS_PROFILE or the default chain)."""


@dataclass(kw_only=True)
class RebalanceResult:
    """What the command prints (table or --json)."""

    op_id: str | None
    """None for a dry run."""
    state: str
    """DRY_RUN, DONE, ROLLED_BACK, or the state a resumable operation stopped in."""
    plan: MovePlan
    acquired: list[str] = field(default_factory=list)
    """Instances launched in the destination (empty for a dry run)."""
    progress: list[Progress] = field(default_factory=list)
    inventory: InventoryAge | None = None
    """The inventory the move was planned on: its age, and the stacks updated since."""

    def to_dict(self) -> dict[str, Any]:
        """The move's keys at the top, as `rebalance ls` and `rebalance show` have them, and its node
        groups as status has them (docs/json.md); the whole plan under ``plan``."""
        plan = self.plan.to_dict()
        return {"op_id": self.op_id, "state": self.state, "pool": self.plan.pool, "from_role": self.plan.from_role,
                "to_role": self.plan.to_role, "nodes": self.plan.nodes,
                "source": NodeGroupRef.of_plan(plan, "source"), "dest": NodeGroupRef.of_plan(plan, "dest"),
                "plan": plan, "acquired": self.acquired, "progress": self.progress, "inventory": self.inventory}


def check_tiers(tiers: tuple[str, ...] | list[str], where: str) -> None:
    """Every tier is one the node checks know (found here, not after nodes moved)."""
    known = [t.value for t in Tier]
    for tier in tiers:
        if tier not in known:
            raise BadInputError(f"{where} {tier!r}: expected a comma-separated list of {', '.join(known)}")
    if not tiers:
        raise BadInputError(f"{where}: no tier given", f"one or more of {', '.join(known)}")


def check_args(args: RebalanceArgs) -> MoveRequest | None:
    """The flag combinations; returns the move request (None for --resume / --cancel)."""
    if args.gate_tiers is not None:
        check_tiers(args.gate_tiers, "--gate-tiers")
    if args.lease_s is not None and not 1 <= args.lease_s <= 3600:
        raise BadInputError(f"--lease-seconds {args.lease_s!r}: expected 1 to 3600")
    if args.resume and args.cancel:
        raise BadInputError("--resume and --cancel both given", "pick one operation id and one action")
    if args.resume or args.cancel:
        given = [f for f, v in (("--from", args.from_role), ("--to", args.to_role), ("--nodes", args.nodes),
                                ("--pool", args.pool)) if v is not None]
        if given:
            raise BadInputError(f"{', '.join(given)} cannot be combined with --resume/--cancel",
                                "the journal holds the plan of the operation")
        return None
    missing = [f for f, v in (("--from", args.from_role), ("--to", args.to_role), ("--nodes", args.nodes)) if v is None]
    if missing:
        raise BadInputError(f"missing {', '.join(missing)}",
                            "gpufleet rebalance --from training --to inference --nodes 2 [--yes]")
    return MoveRequest(from_role=args.from_role or "", to_role=args.to_role or "", nodes=args.nodes or 0, pool=args.pool)


def _gate_stack(inventory: FleetInventory, request: MoveRequest) -> str:
    """The stack whose health gate a new move journals (checking the request on the way)."""
    if involves_reservation(request):
        return check_reservation_request(inventory, request).stack
    return resolve(inventory, request).dest.stack


ClientsFactory = Callable[[FleetInventory], Callable[[str, str], Any]]
GateFactory = Callable[[FleetInventory], HealthGate]



def cached_clients(access: Any) -> Callable[[str, str], Any]:
    """Clients per (stack, service) from an ``gpufleet.automation.aws.AwsAccess``, made once."""
    cache: dict[tuple[str, str], Any] = {}

    def client(stack: str, service: str) -> Any:
        if (stack, service) not in cache:
            passthrough = CONTROL_FLOW if service == "dynamodb" else ()
            cache[(stack, service)] = access.client(stack, service, passthrough=passthrough)
        return cache[(stack, service)]

    return client


def rebalance(args: RebalanceArgs, *, clients: ClientsFactory | None = None, gate: GateFactory | None = None,
              on_progress: Callable[[Progress], None] | None = None, limits: Limits | None = None) -> RebalanceResult:
    """``clients`` and ``gate`` default to AWS through ``gpufleet.automation.aws`` and the ``--probe`` gate."""
    request = check_args(args)
    if args.probe is not None and args.probe not in PROBES:
        raise BadInputError(f"--probe {args.probe!r}: expected one of {', '.join(PROBES)}")
    inventory = load_inventory(args.inventory)
    # every flag checked against the inventory; the gate is chosen for the stack that receives nodes
    # (a give-back receives none: its consumer's choice is journaled, and no gate runs)
    dest_stack = _gate_stack(inventory, request) if request is not None else None
    if dest_stack is not None:
        gate_choice(inventory, dest_stack, probe=args.probe, tiers=args.gate_tiers)  # before the first AWS call
    session_for: Callable[[str], Any] = lambda stack: None  # noqa: E731
    state_client = default_state_client
    if clients is None:
        from gpufleet.automation.aws import AwsAccess

        access = AwsAccess(inventory, operation="rebalance", profile=args.profile)
        client, session_for, state_client = cached_clients(access), access.session, access.state_client
    else:
        client = clients(inventory)
    age = inventory_age(inventory, state_client=state_client)
    journal = Journal(client(inventory.platform_stack, "dynamodb"), inventory.journal_table)
    op = None
    if request is None:
        op_id = args.resume or args.cancel or ""
        op = journal.load(op_id)
        if op is None:
            raise BadInputError(f"{'--resume' if args.resume else '--cancel'} {op_id!r}: no such rebalance in "
                                f"journal table {inventory.journal_table}")
    # The gate choice is journaled with the move, so a resumed move is gated the same way.
    journaled = (op.body.get("gate") or {}) if op is not None else {}
    if op is not None:
        journaled_plan = MovePlan.from_dict(op.body["plan"])
        dest_stack = journaled_plan.dest_stack or journaled_plan.source_stack
    if op is not None and args.probe is None and journaled.get("probe", "orchestrator") not in PROBES:
        raise BadInputError(f"the journaled probe {journaled['probe']!r} of {op.op_id}: expected one of "
                            f"{', '.join(PROBES)}", "pass --probe to choose another")
    choice = gate_choice(inventory, dest_stack or "", probe=args.probe, tiers=args.gate_tiers, journaled=journaled)
    if op is not None and args.gate_tiers is None:
        check_tiers(choice["tiers"], f"the journaled gate tiers of {op.op_id}:")
    health = gate(inventory) if gate is not None else make_gate(choice, session_for,
                                                                orchestrator_probe=orchestrator_probes(inventory, dcgm_level=choice["dcgmLevel"]))
    seen: list[Progress] = []

    def progress(p: Progress) -> None:
        if p.waiting is None:  # the result keeps the steps; the polls are for the live line
            seen.append(p)
        if on_progress:
            on_progress(p)

    executor = Executor(inventory, client, journal, lambda kind, stack: for_group(kind, stack=stack, source=str(args.inventory)),
                        health, limits=limits or (Limits(lease_s=args.lease_s) if args.lease_s else Limits()),
                        on_progress=progress)
    if op is not None:
        op_id = op.op_id
        progress(Progress(op_id=op_id, state=str(op.state), message="resuming" if args.resume else "cancelling",
                          pool=str(op.body.get("plan", {}).get("pool", "")),
                          brief=f"{op_id} {'resuming' if args.resume else 'cancelling'}"))
        op = executor.resume(op_id) if args.resume else executor.cancel(op_id)
        return RebalanceResult(op_id=op.op_id, state=str(op.state), plan=MovePlan.from_dict(op.body["plan"]),
                               acquired=list(op.body.get("progress", {}).get("acquired", [])), progress=seen,
                               inventory=age)
    plan = executor.plan(request)
    if not args.execute:
        return RebalanceResult(op_id=None, state="DRY_RUN", plan=plan, inventory=age)
    op = executor.start(plan, new_op_id(), gate=choice)
    progress(Progress(op_id=op.op_id, state=str(op.state), message=f"journaled in {inventory.journal_table}",
                      pool=plan.pool, brief=f"{op.op_id} journaled"))
    op = executor.run(op)
    return RebalanceResult(op_id=op.op_id, state=str(op.state), plan=plan,
                           acquired=list(op.body.get("progress", {}).get("acquired", [])), progress=seen, inventory=age)
