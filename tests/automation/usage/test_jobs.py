"""GPU-hours per Slurm job from sacct's text: parsing, clipping to the period, findings."""

from __future__ import annotations

import datetime

import pytest

from gpufleet.automation.usage.jobs import SACCT_FIELDS, findings, parse_sacct
from gpufleet.automation.usage.spans import NodeSpan
from gpufleet.infra.errors import SlurmError

T0 = datetime.datetime(2026, 12, 1, 6, 0, tzinfo=datetime.UTC).timestamp()
SACCT = "\n".join([
    "41|research|alice|billing=2,cpu=2,gres/gpu=8,node=1|2026-12-01T06:10:00|2026-12-01T06:40:00|COMPLETED|train-h100-i-0aaaaaaaaaaaaaaaa",
    "42|research|bob|billing=4,cpu=4,gres/gpu=16,node=2|2026-12-01T05:30:00|2026-12-01T07:30:00|CANCELLED by 0|train-h100-i-0[aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb]",
    "43|ops|carol|billing=1,cpu=1,node=1|2026-12-01T06:00:00|2026-12-01T06:05:00|COMPLETED|train-h100-i-0aaaaaaaaaaaaaaaa",
    "44|research|dave|billing=2,cpu=2,gres/gpu=8,node=1|2026-12-01T06:50:00|Unknown|RUNNING|train-h100-i-0bbbbbbbbbbbbbbbb",
    "45|research|erin|billing=2,cpu=2,gres/gpu=8,node=1|Unknown|Unknown|PENDING|None assigned",
    "46|research|fay|billing=2,cpu=2,gres/gpu=8,node=1|2026-12-01T04:00:00|2026-12-01T05:00:00|COMPLETED|train-h100-i-0bbbbbbbbbbbbbbbb",
])


def test_sacct_fields_are_what_the_parser_reads() -> None:
    assert SACCT_FIELDS == ("JobID", "Account", "User", "AllocTRES", "Start", "End", "State", "NodeList")


def test_jobs_are_clipped_to_the_period_and_counted_by_allocated_gpus() -> None:
    jobs = {j.job_id: j for j in parse_sacct(SACCT, T0, T0 + 3600)}
    assert sorted(jobs) == ["41", "42", "43", "44"]  # 45 never started, 46 ended before the period
    assert jobs["41"].gpus == 8 and jobs["41"].gpu_seconds == 8 * 30 * 60
    assert jobs["42"].gpus == 16 and jobs["42"].gpu_seconds == 16 * 3600  # 05:30-07:30 cut to 06:00-07:00
    assert jobs["42"].state == "CANCELLED"
    assert jobs["43"].gpus == 0 and jobs["43"].gpu_seconds == 0
    assert jobs["44"].end is None and jobs["44"].gpu_seconds == 8 * 10 * 60  # running: to the period's end
    assert jobs["41"].gpu_hours == 4.0


def test_a_malformed_line_names_itself() -> None:
    with pytest.raises(SlurmError, match="has 3 fields, expected 8"):
        parse_sacct("1|a|b", T0, T0 + 60)
    with pytest.raises(SlurmError, match="job 7 has time 'yesterday'"):
        parse_sacct("7|a|b|gres/gpu=1|yesterday|Unknown|RUNNING|n1", T0, T0 + 60)


def test_gpu_seconds_outside_any_nodes_life_are_findings() -> None:
    a, b = "i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb"
    nodes = [NodeSpan(instance_id=a, stack="training", account_id="1", role="training", pool="p", start=T0 - 7200),
             # b was launched at 06:20 and is gone at 06:55: job 42 ran on it before and after.
             NodeSpan(instance_id=b, stack="training", account_id="1", role="training", pool="p",
                      start=T0 + 1200, end=T0 + 3300)]
    jobs = parse_sacct(SACCT, T0, T0 + 3600)
    hosts = {"train-h100-i-0aaaaaaaaaaaaaaaa": [f"train-h100-{a}"],
             "train-h100-i-0[aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb]": [f"train-h100-{a}", f"train-h100-{b}"],
             "train-h100-i-0bbbbbbbbbbbbbbbb": [f"train-h100-{b}"]}
    found = findings(jobs, hosts, nodes, T0, T0 + 3600)
    # 42: 8 GPUs on b for 06:00-06:20 and 06:55-07:00 = 25 min; 44: 8 GPUs on b for 06:55-07:00.
    assert found == [f"job 42 (research/bob): {8 * 25 * 60} GPU-seconds on train-h100-{b} outside that instance's life",
                     f"job 44 (research/dave): {8 * 5 * 60} GPU-seconds on train-h100-{b} outside that instance's life"]
    assert findings(jobs, {"train-h100-i-0aaaaaaaaaaaaaaaa": ["node1"]}, nodes, T0, T0 + 3600) == [
        "job 41 (research/alice): 14400 GPU-seconds on node1 on no instance of the fleet"]
