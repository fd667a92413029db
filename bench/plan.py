"""Benchmark `gpufleet plan --json`: wall time and peak memory, reference stacks vs generated fleets.

Each size runs the real CLI in a subprocess (imports included, as a user sees it); peak memory is
the child's ru_maxrss. Sizes beyond the reference fleet are generated stack files with N GPU node
groups split between training and inference, over N/4 pools. Ratios are against the reference
fleet measured in the same run.

    .venv/bin/python bench/plan.py [--sizes 25,50,100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
GPUFLEET = [sys.executable, "-m", "gpufleet.automation"]
INSTANCE_TYPES = ("p5.48xlarge", "p5en.48xlarge", "p4d.24xlarge")
AZS = ("use1-az4", "use1-az6")
TARGET_REFERENCE_S = 3.0
TARGET_100_S = 10.0


def generate_fleet(directory: Path, num_groups: int) -> None:
    """Stack files for a platform and two consumers with ``num_groups`` node groups in all."""
    num_pools = max(1, num_groups // 4)
    pools = [{"name": f"pool-{i:03d}", "instanceType": INSTANCE_TYPES[i % len(INSTANCE_TYPES)],
              "azId": AZS[i % len(AZS)], "count": 16, "kind": "odcr", "shareWith": ["training", "inference"]}
             for i in range(num_pools)]
    common = {"aws:region": "us-east-1", "gpufleet:azIds": list(AZS)}
    platform = {**common, "gpufleet:role": "platform", "gpufleet:accountId": "111111111111",
                "gpufleet:deployRoleArn": "arn:aws:iam::111111111111:role/gpufleet-deploy",
                "gpufleet:network": {"cidr": "10.10.0.0/16"},
                "gpufleet:consumerAccounts": {"training": "222222222222", "inference": "333333333333"},
                "gpufleet:pools": pools}
    groups: dict[str, list[dict[str, object]]] = {"training": [], "inference": []}
    for i in range(num_groups):
        pool = pools[i % num_pools]
        role = "training" if i % 2 == 0 else "inference"
        groups[role].append({"name": f"gpu-{i:03d}", "pool": pool["name"], "instanceType": pool["instanceType"],
                             "initialNodes": 1, "minNodes": 0, "maxNodes": 4})
    consumers = {
        "training": {**common, "gpufleet:role": "training", "gpufleet:accountId": "222222222222",
                     "gpufleet:deployRoleArn": "arn:aws:iam::222222222222:role/gpufleet-deploy",
                     "gpufleet:platformStack": "acme/gpufleet/platform", "gpufleet:clusterKind": "slurm",
                     "gpufleet:network": {"cidr": "10.20.0.0/16", "enableNat": True},
                     "gpufleet:nodeGroups": groups["training"],
                     "gpufleet:storage": {"fsxCapacityGib": 4800, "fsxThroughputPerTib": 250}},
        "inference": {**common, "gpufleet:role": "inference", "gpufleet:accountId": "333333333333",
                      "gpufleet:deployRoleArn": "arn:aws:iam::333333333333:role/gpufleet-deploy",
                      "gpufleet:platformStack": "acme/gpufleet/platform", "gpufleet:clusterKind": "eks",
                      "gpufleet:holdsPhi": True, "gpufleet:network": {"cidr": "10.30.0.0/16"},
                      "gpufleet:nodeGroups": groups["inference"]},
    }
    for name, config in {"platform": platform, **consumers}.items():
        (directory / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}, sort_keys=False))


def measure(stacks_dir: Path, repeat: int, out_path: Path) -> dict[str, float]:
    walls, cpus, peaks = [], [], []
    doc: dict = {}
    for _ in range(repeat):
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # child: exec the CLI with stdout to a file so the parent can read the JSON
            fd = os.open(str(out_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.chdir(REPO)
            os.execv(sys.executable, [*GPUFLEET, "plan", "--json", "--stacks-dir", str(stacks_dir)])
        _, status, usage = os.wait4(pid, 0)
        walls.append(time.perf_counter() - start)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"plan failed for {stacks_dir}: exit {os.waitstatus_to_exitcode(status)}")
        peaks.append(usage.ru_maxrss / 1024)  # KiB on Linux
        cpus.append(usage.ru_utime + usage.ru_stime)
        doc = json.loads(out_path.read_text())
    node_groups = sum(len(s["node_groups"]) for s in doc["stacks"])
    return {"node_groups": node_groups, "resources": doc["totals"]["resources"],
            "wall_s": statistics.median(walls), "wall_min_s": min(walls), "cpu_s": statistics.median(cpus),
            "peak_mib": max(peaks)}


def render_cost(stacks_dir: Path) -> tuple[int, float]:
    """Resources and CPU ms per resource of rendering alone: in this process, imports warm, serial."""
    sys.path.insert(0, str(REPO))
    from gpufleet.automation.plan import load_specs
    from gpufleet.infra.offline.render import render_fleet

    specs = load_specs(stacks_dir)
    render_fleet(specs, parallel=False)  # imports and caches
    start = time.process_time()
    rendered = render_fleet(specs, parallel=False)
    cpu = time.process_time() - start
    count = sum(len(r.resources) for r in rendered)
    return count, 1000 * cpu / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="25,50,100", help="generated fleet sizes (node groups)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "plan.json"
        rows = [("reference (3 stacks)", measure(REPO / "stacks", args.repeat, out_path))]
        for size in (int(s) for s in args.sizes.split(",") if s):
            directory = Path(tmp) / f"fleet-{size}"
            directory.mkdir()
            generate_fleet(directory, size)
            rows.append((f"generated, {size} groups", measure(directory, args.repeat, out_path)))
            if size == max(int(x) for x in args.sizes.split(",") if x):
                registrations, per_resource = render_cost(directory)
            shutil.rmtree(directory)
    base = rows[0][1]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"gpufleet plan --json, median of {args.repeat} runs, {os.cpu_count()} CPUs\n"
          f"load average {load}; Python {sys.version.split()[0]}")
    print("wall: what a user waits (inflated when the machine is shared);\n"
          "cpu: user+sys of the process; ms/res: cpu per resource; x: vs the reference")
    header = (f"{'fleet':<21} {'groups':>6} {'res':>5} {'wall s':>6} {'x':>5} {'cpu s':>6} {'x':>5} "
              f"{'ms/res':>6} {'MiB':>5} {'x':>5}")
    print(header)
    print("-" * len(header))
    for label, r in rows:
        print(f"{label:<21} {r['node_groups']:>6} {r['resources']:>5} {r['wall_s']:>6.2f} "
              f"{r['wall_s'] / base['wall_s']:>5.2f} {r['cpu_s']:>6.2f} {r['cpu_s'] / base['cpu_s']:>5.2f} "
              f"{1000 * r['cpu_s'] / r['resources']:>6.1f} {r['peak_mib']:>5.0f} {r['peak_mib'] / base['peak_mib']:>5.2f}")
    if len(rows) > 2:
        (_, small), (_, large) = rows[1], rows[-1]
        extra = large["resources"] - small["resources"]
        print(f"marginal cost between generated sizes: {1000 * (large['wall_s'] - small['wall_s']) / extra:.1f} ms wall, "
              f"{1000 * (large['cpu_s'] - small['cpu_s']) / extra:.1f} ms cpu per resource")
    if len(rows) > 1:
        print(f"render alone (in-process, imports warm, serial, components included):\n"
              f"{registrations} registrations, {per_resource:.1f} ms CPU each")
    print(f"targets: reference < {TARGET_REFERENCE_S:.0f} s ({'met' if base['wall_s'] < TARGET_REFERENCE_S else 'MISSED'})"
          + "".join(f", {r['node_groups']} groups < {TARGET_100_S:.0f} s "
                    f"({'met' if r['wall_s'] < TARGET_100_S else 'MISSED'})" for _, r in rows if r["node_groups"] >= 100))


if __name__ == "__main__":
    main()
