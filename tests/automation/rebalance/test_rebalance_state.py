import pytest

from gpufleet.automation.rebalance.state import (
    EDGES,
    FORWARD,
    TERMINAL,
    MoveState,
    check_transition,
    is_legal,
)
from gpufleet.infra.errors import ConflictError


def test_forward_path_is_a_chain_and_every_live_state_can_roll_back():
    for here, there in zip(FORWARD, FORWARD[1:], strict=False):
        assert is_legal(here, there)
    for state in MoveState:
        if state in TERMINAL:
            assert EDGES[state] == frozenset()
        elif state is not MoveState.ROLLING_BACK:
            assert is_legal(state, MoveState.ROLLING_BACK)


@pytest.mark.parametrize("here,there", [
    (MoveState.PLANNED, MoveState.RELEASED),
    (MoveState.RELEASED, MoveState.DRAINED),
    (MoveState.DONE, MoveState.ROLLING_BACK),
    (MoveState.ROLLING_BACK, MoveState.DONE),
    (MoveState.ROLLED_BACK, MoveState.PLANNED),
])
def test_illegal_edges_are_refused(here, there):
    with pytest.raises(ConflictError, match=f"{here} -> {there}"):
        check_transition(here, there)
