"""The healer's decision table: the shipped file is valid and agrees with the node side's Xid
grading; a bad table fails naming file, line, column and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.automation.heal.decisions import (
    COLUMNS,
    TABLE,
    HealAction,
    default_table,
    parse_table,
)
from gpufleet.infra.errors import ConfigError
from gpufleet.lifecycle.health import xid
from gpufleet.lifecycle.health.results import Status

BRIEF_XIDS = (13, 31, 43, 45, 48, 63, 64, 74, 79, 92, 94, 95, 119, 120)


# NVIDIA's resolution buckets (the catalog's Immediate Action column) and what each allows the
# healer to do to a cloud instance: an application fault or a bucket NVIDIA says to ignore leaves the
# node; a GPU reset, a machine restart or a reset workflow is a reboot (or a replacement where the
# memory is worn out); contacting support is handing the hardware back, a replacement.
BUCKET_ACTIONS = {
    "RESTART_APP": {HealAction.LEAVE}, "IGNORE": {HealAction.LEAVE}, "WORKFLOW_XID_45": {HealAction.LEAVE},
    "RESET_GPU": {HealAction.REBOOT, HealAction.REPLACE}, "RESTART_BM": {HealAction.REBOOT},
    "WORKFLOW_XID_48": {HealAction.REBOOT}, "WORKFLOW_NVLINK_ERR": {HealAction.REBOOT},
    "CONTACT_SUPPORT": {HealAction.REPLACE},
    "Follow guidance as it applies to another Xid": {HealAction.REBOOT},
}
# Where the table is stricter than NVIDIA's bucket, and why: Xid 94 (contained ECC error) is
# RESTART_APP, but the node's own check fails the node until the GPU is reset (a reboot here).
STRICTER = {94: HealAction.REBOOT}


def test_every_named_xid_has_a_cited_row():
    table = default_table().xids()
    for code in BRIEF_XIDS:
        row = table[code]
        assert row.source.startswith("https://docs.nvidia.com/deploy/xid-errors/"), code
        assert row.nvidia_action in BUCKET_ACTIONS, code


def test_each_xid_action_follows_its_nvidia_bucket():
    for code, row in default_table().xids().items():
        assert row.nvidia_action in BUCKET_ACTIONS, (code, row.nvidia_action)
        if code in STRICTER:
            assert row.action is STRICTER[code], code
        else:
            assert row.action in BUCKET_ACTIONS[row.nvidia_action], (code, row.nvidia_action, row.action)


def test_each_xid_row_says_what_it_was_checked_against():
    """Only Xid 13's row shows on the stored copy of the catalog page; the others were checked
    against NVIDIA's own machine-readable mapping of the catalog, and the row says so."""
    for code, row in default_table().xids().items():
        if code == 13:
            assert row.checked.startswith("catalog page"), code
        else:
            assert "NVIDIA/NVSentinel xiderrorsmapping.csv" in row.checked, code


def test_the_table_agrees_with_the_node_side_grading():
    """What the node's check fails on is acted on; what it calls an application fault is left."""
    table = default_table()
    for code, meaning in xid.XID_CATALOG.items():
        decided = table.lookup(f"xid:{code}").action
        if meaning.status is Status.FAIL:
            assert decided is not HealAction.LEAVE, code
        if meaning.status is Status.PASS:
            assert decided is HealAction.LEAVE, code


def test_unknown_xid_is_left_and_says_so():
    row = default_table().lookup("xid:999")
    assert row.action is HealAction.LEAVE and "not in the decision table" in row.why


def test_lasting_conditions_and_requests():
    table = default_table()
    assert table.rows["not_ready"].after_minutes == 10
    assert table.rows["replace_requested"].action is HealAction.REPLACE
    assert table.rows["reboot_failed"].action is HealAction.REPLACE


def _table(tmp_path: Path, *rows: str, drop: str = "") -> Path:
    lines = [ln for ln in TABLE.read_text().splitlines()[1:] if not drop or not ln.startswith(drop + ",")]
    path = tmp_path / "decisions.csv"
    path.write_text("\n".join([",".join(COLUMNS), *lines, *rows]) + "\n")
    return path


@pytest.mark.parametrize(("row", "key", "value"), [
    ("xid:7,explode,,RESET_GPU,https://docs.nvidia.com/x,page,why", "action", "explode"),
    ("xid:7,reboot,,,gpufleet,page,uncited", "source", "gpufleet"),
    ("xid:7,reboot,,RESET_GPU,https://docs.nvidia.com/x,,unchecked", "checked", ""),
    ("xid:seven,reboot,,RESET_GPU,https://docs.nvidia.com/x,page,why", "signal", "xid:seven"),
    ("gpu_on_fire,replace,,,gpufleet,,why", "signal", "gpu_on_fire"),
    ("xid:13,reboot,,RESTART_APP,https://docs.nvidia.com/x,page,twice", "signal", "xid:13"),
])
def test_a_bad_row_names_file_line_key_and_value(tmp_path, row, key, value):
    path = _table(tmp_path, row)
    line = len(path.read_text().splitlines())
    with pytest.raises(ConfigError) as err:
        parse_table(path)
    assert (err.value.source, err.value.key, err.value.value) == (f"{path}:{line}", key, value)
    assert err.value.code == 2


def test_a_missing_signal_row_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="reboot_failed"):
        parse_table(_table(tmp_path, drop="reboot_failed"))


def test_not_ready_without_a_duration_is_refused(tmp_path):
    path = _table(tmp_path, "not_ready,replace,,,gpufleet,,no duration", drop="not_ready")
    with pytest.raises(ConfigError) as err:
        parse_table(path)
    assert err.value.key == "after_minutes"
