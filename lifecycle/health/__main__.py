"""``python -m gpufleet.lifecycle.health [--tiers quick,performance,deep] [--json] [--textfile PATH]``.

Prints a table (or the NodeReport as JSON), optionally writes the Prometheus textfile. Exit status:
0 when nothing FAILed, 1 when a check FAILed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from pathlib import Path

from gpufleet.lifecycle.health.deep import MultiNodeSpec
from gpufleet.lifecycle.health.metrics import write_textfile
from gpufleet.lifecycle.health.node_check import check_node
from gpufleet.lifecycle.health.results import NodeReport, parse_tiers
from gpufleet.lifecycle.health.settings import HealthSettings

MIN_DETAIL = 24
"""Narrower than this, the DETAIL column would read a word a line: each detail goes under its row instead."""


def table(report: NodeReport, width: int | None = None) -> str:
    """The report as a table no wider than ``width`` (default: the terminal's, or ``COLUMNS``).

    DETAIL folds at spaces, never inside a word (a PCI address, a mount point stays whole); when the
    other columns leave it too little room, each detail is printed under its row, indented."""
    width = width or shutil.get_terminal_size().columns
    rows = [("CHECK", "DEVICE", "STATUS", "MEASURED", "EXPECTED", "ACTION", "DETAIL")]
    for r in report.results:
        rows.append((r.check, r.device or "-", r.status.value,
                     f"{r.measured:.4g} {r.unit}".strip() if r.measured is not None else "-",
                     f"{r.expected:.4g} {r.unit}".strip() if r.expected is not None else "-",
                     r.action.value, r.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    lead = sum(widths) + 2 * len(widths)
    lines = [f"node {report.node} ({report.instance_type or 'no instance type'}, {report.gpu_model}): "
             f"{report.status.value} in {report.duration_s:.1f} s"]
    beside = width - lead >= MIN_DETAIL
    for n, row in enumerate(rows):
        cells = "  ".join(cell.ljust(w) for cell, w in zip(row[:6], widths, strict=True))
        if beside:
            folded = _fold(row[6], width - lead) or [""]
            lines.append(f"{cells}  {folded[0]}".rstrip())
            lines += [" " * lead + more for more in folded[1:]]
        else:
            lines.append(cells.rstrip())
            if n:
                lines += ["  " + more for more in _fold(row[6], width - 2)]
    return "\n".join(lines)


def _fold(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, max(width, 1), break_long_words=False, break_on_hyphens=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpufleet.lifecycle.health", description=__doc__.splitlines()[0])
    parser.add_argument("--tiers", default="quick", help="comma-separated: quick, performance, deep")
    parser.add_argument("--json", action="store_true", help="print the NodeReport as JSON")
    parser.add_argument("--brief", action="store_true",
                        help="leave the raw figures out of the JSON (SSM keeps only 24,000 characters of output)")
    parser.add_argument("--textfile", type=Path, help="write Prometheus metrics here (atomically)")
    parser.add_argument("--node", help="node name for the report (default: $GPUFLEET_NODE_NAME or hostname)")
    parser.add_argument("--instance-type", help="default: $GPUFLEET_INSTANCE_TYPE, else instance metadata")
    parser.add_argument("--fsx-mount", help="default: $GPUFLEET_FSX_MOUNT")
    parser.add_argument("--cpu-ranks", type=int, default=2, help="ranks on a host without GPUs")
    parser.add_argument("--dcgm-level", type=int, default=3, choices=[1, 2, 3, 4])
    parser.add_argument("--nnodes", type=int, default=0, help="deep: nodes of the pool-wide all-reduce")
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument("--master-addr", default="")
    parser.add_argument("--master-port", type=int, default=29512)
    parser.add_argument("--no-dcgm", action="store_true",
                        help="deep: only the multi-node all-reduce (the gate's newcomer + known-good peer)")
    args = parser.parse_args(argv)
    try:
        tiers = parse_tiers(args.tiers)
        overrides = {k: v for k, v in (("node", args.node), ("instance_type", args.instance_type),
                                       ("fsx_mount", args.fsx_mount)) if v}
        settings = HealthSettings.from_environment(**overrides)
    except (ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    multinode = None
    if args.nnodes > 1:
        if not args.master_addr:
            print("error: --nnodes needs --master-addr (the address of node rank 0)", file=sys.stderr)
            return 2
        from gpufleet.lifecycle.health.performance import node_devices

        _, nproc, model, _ = node_devices(settings, args.cpu_ranks)
        multinode = MultiNodeSpec(nnodes=args.nnodes, node_rank=args.node_rank, master_addr=args.master_addr,
                                  master_port=args.master_port, nproc_per_node=max(1, nproc), model=model)
    report = check_node(settings, tiers, cpu_ranks=args.cpu_ranks, dcgm_level=args.dcgm_level, multinode=multinode,
                        dcgm=not args.no_dcgm)
    if args.textfile:
        write_textfile(args.textfile, report)
    if args.json:
        doc = report.to_dict()
        if args.brief:
            doc.pop("extra", None)
        print(json.dumps(doc, separators=(",", ":")) if args.brief else json.dumps(doc, indent=2))
    else:
        print(table(report))
    return 1 if not report.passed else 0


if __name__ == "__main__":
    sys.exit(main())
