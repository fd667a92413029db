"""The rebalance journal (and the pools' leases, ``gpufleet.automation.lease``), in the platform account's DynamoDB table.

Table layout (the platform stack and the sandbox create it this way; see ``TABLE_SCHEMA``):
partition key ``pk`` (S), sort key ``sk`` (S).

    op item     pk="op#<op id>"  sk="op"       state, version, body (JSON: the plan and progress)
    event item  pk="op#<op id>"  sk="ev#<time ns>#<rand>"  event_type, state, step, detail (JSON)
    lease item  pk="lease#pool#<pool>"  sk="lease"  (gpufleet.automation.lease: one per pool, fenced)

Every write of the op item is compare-and-set on (state, version); a transition writes the op item
and its event in one transaction. The intent of each external call is recorded before the call and
its result after it, so a resumed run knows what may have happened.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from gpufleet.automation.aws import translated
from gpufleet.automation.lease import process_owner
from gpufleet.automation.rebalance.state import MoveState, check_transition
from gpufleet.infra.errors import ConflictError

CONTROL_FLOW = ("ConditionalCheckFailedException", "TransactionCanceledException")
"""DynamoDB's answers to a lost compare-and-set or a held lock: the journal handles them."""
JOURNAL_HINT = "check the platform account's credentials and the journal table; nothing else was changed by this call"

TABLE_SCHEMA: dict[str, Any] = {
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                             {"AttributeName": "sk", "AttributeType": "S"}],
    "BillingMode": "PAY_PER_REQUEST",
}
"""Keyword arguments for ``dynamodb.create_table`` (besides TableName)."""


def create_table(ddb: Any, name: str) -> None:
    """Create the journal table if it does not exist (sandbox and tests; the stack creates it in AWS)."""
    try:
        ddb.create_table(TableName=name, **TABLE_SCHEMA)
    except ClientError as err:
        if err.response["Error"]["Code"] != "ResourceInUseException":
            raise


def new_op_id() -> str:
    return time.strftime("rb-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)


@dataclass(kw_only=True)
class Operation:
    """One rebalance as the journal holds it."""

    op_id: str
    state: MoveState
    version: int
    """Incremented by every write; the compare-and-set token."""
    body: dict[str, Any] = field(default_factory=dict)
    """The plan (``plan``) and what has been done so far (``progress``)."""


@dataclass(frozen=True, kw_only=True)
class Event:
    event_type: str
    """transition | intent | result | lock | note."""
    state: str
    step: str
    detail: dict[str, Any]
    at_ns: int


def _s(v: str) -> dict[str, str]:
    return {"S": v}


def _n(v: float) -> dict[str, str]:
    return {"N": repr(v) if isinstance(v, float) else str(v)}


class Journal:
    """Reads and writes one fleet's rebalance journal. ``ddb`` is a boto3 DynamoDB client."""

    def __init__(self, ddb: Any, table: str, *, owner: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.ddb = ddb
        self.table = table
        self.owner = owner or process_owner()
        self.clock = clock

    # -- calls -----------------------------------------------------------------------------------
    def _call(self, name: str, **kwargs: Any) -> Any:
        with translated(service="dynamodb", operation=name, subject=f"journal table {self.table}",
                        hint=JOURNAL_HINT, passthrough=CONTROL_FLOW):
            return getattr(self.ddb, name)(TableName=self.table, **kwargs) if name != "transact_write_items" \
                else self.ddb.transact_write_items(**kwargs)

    # -- operations ------------------------------------------------------------------------------
    def create(self, op_id: str, body: dict[str, Any]) -> Operation:
        """Write a new PLANNED operation (fails if the id exists)."""
        now = self.clock()
        item = {"pk": _s(f"op#{op_id}"), "sk": _s("op"), "op_id": _s(op_id), "state": _s(MoveState.PLANNED),
                "version": _n(1), "body": _s(json.dumps(body, sort_keys=True)), "created_at": _n(now),
                "updated_at": _n(now), "owner": _s(self.owner)}
        event = self._event_item(op_id, "transition", MoveState.PLANNED, "plan", {"from": None})
        try:
            self._call("transact_write_items", TransactItems=[
                {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": self.table, "Item": event}},
            ])
        except ClientError:
            raise ConflictError(f"rebalance {op_id} already exists in the journal") from None
        return Operation(op_id=op_id, state=MoveState.PLANNED, version=1, body=body)

    def load(self, op_id: str) -> Operation | None:
        got = self._call("get_item", Key={"pk": _s(f"op#{op_id}"), "sk": _s("op")}, ConsistentRead=True)
        item = got.get("Item")
        if item is None:
            return None
        return Operation(op_id=op_id, state=MoveState(item["state"]["S"]), version=int(item["version"]["N"]),
                         body=json.loads(item["body"]["S"]))

    def list_ops(self, *, in_flight_only: bool = False) -> list[Operation]:
        """Every operation in the table (a scan: the table holds few items)."""
        ops: list[Operation] = []
        kwargs: dict[str, Any] = {"FilterExpression": "sk = :op", "ExpressionAttributeValues": {":op": _s("op")},
                                  "ConsistentRead": True}
        for _ in range(1000):
            page = self._call("scan", **kwargs)
            for item in page.get("Items", []):
                op = Operation(op_id=item["op_id"]["S"], state=MoveState(item["state"]["S"]),
                               version=int(item["version"]["N"]), body=json.loads(item["body"]["S"]))
                if not in_flight_only or op.state not in {MoveState.DONE, MoveState.ROLLED_BACK}:
                    ops.append(op)
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(ops, key=lambda o: o.op_id)

    def events(self, op_id: str) -> list[Event]:
        out: list[Event] = []
        kwargs: dict[str, Any] = {"KeyConditionExpression": "pk = :pk AND begins_with(sk, :ev)",
                                  "ExpressionAttributeValues": {":pk": _s(f"op#{op_id}"), ":ev": _s("ev#")},
                                  "ConsistentRead": True}
        for _ in range(1000):
            page = self._call("query", **kwargs)
            for it in page.get("Items", []):
                out.append(Event(event_type=it["event_type"]["S"], state=it["state"]["S"], step=it["step"]["S"],
                                 detail=json.loads(it["detail"]["S"]), at_ns=int(it["at_ns"]["N"])))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return out

    def note(self, op_id: str, event_type: str, step: str, detail: dict[str, Any]) -> None:
        """An event of an operation that has no state machine (a replacement pass)."""
        self._call("put_item", Item=self._event_item(op_id, event_type, "-", step, detail))

    def _event_item(self, op_id: str, event_type: str, state: MoveState | str, step: str,
                    detail: dict[str, Any]) -> dict[str, Any]:
        at_ns = time.time_ns()
        return {"pk": _s(f"op#{op_id}"), "sk": _s(f"ev#{at_ns:020d}#{secrets.token_hex(3)}"),
                "event_type": _s(event_type), "state": _s(state), "step": _s(step),
                "detail": _s(json.dumps(detail, sort_keys=True, default=str)), "at_ns": _n(at_ns),
                "owner": _s(self.owner)}

    def _write(self, op: Operation, new_state: MoveState, body: dict[str, Any], event: dict[str, Any]) -> Operation:
        """Compare-and-set the op item on (state, version), with its event, in one transaction."""
        update = {
            "TableName": self.table, "Key": {"pk": _s(f"op#{op.op_id}"), "sk": _s("op")},
            "UpdateExpression": "SET #st = :new, version = :nv, body = :body, updated_at = :now, #ow = :owner",
            "ConditionExpression": "#st = :old AND version = :ov",
            "ExpressionAttributeNames": {"#st": "state", "#ow": "owner"},
            "ExpressionAttributeValues": {":new": _s(new_state), ":old": _s(op.state), ":nv": _n(op.version + 1),
                                          ":ov": _n(op.version), ":body": _s(json.dumps(body, sort_keys=True)),
                                          ":now": _n(self.clock()), ":owner": _s(self.owner)},
        }
        try:
            self._call("transact_write_items", TransactItems=[{"Update": update}, {"Put": {"TableName": self.table, "Item": event}}])
        except ClientError:
            now = self.load(op.op_id)
            if now and now.state == new_state and now.version == op.version + 1 and now.body == body:
                # A retried transaction whose first attempt landed: the write is ours.
                return now
            seen = f"{now.state} v{now.version}" if now else "nothing"
            raise ConflictError(f"rebalance {op.op_id} changed under us: expected {op.state} v{op.version}, found {seen}",
                                "another process is working on this operation; let it finish or wait for its lease to expire") from None
        return Operation(op_id=op.op_id, state=new_state, version=op.version + 1, body=body)

    def transition(self, op: Operation, new_state: MoveState, detail: dict[str, Any] | None = None,
                   body: dict[str, Any] | None = None) -> Operation:
        check_transition(op.state, new_state)
        event = self._event_item(op.op_id, "transition", new_state, str(op.state), {"from": str(op.state), **(detail or {})})
        return self._write(op, new_state, op.body if body is None else body, event)

    def record(self, op: Operation, event_type: str, step: str, detail: dict[str, Any],
               body: dict[str, Any] | None = None) -> Operation:
        """An intent or a result: an event, and (compare-and-set) the op's new body if given."""
        event = self._event_item(op.op_id, event_type, op.state, step, detail)
        if body is None:
            self._call("put_item", Item=event)
            return op
        return self._write(op, op.state, body, event)
