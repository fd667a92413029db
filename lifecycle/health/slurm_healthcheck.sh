#!/bin/bash
# Slurm HealthCheckProgram (or Prolog): run the quick health checks, drain this node on FAIL.
#
# slurm.conf:  HealthCheckProgram=/opt/gpufleet/gpufleet/lifecycle/health/slurm_healthcheck.sh
#              HealthCheckInterval=300  HealthCheckNodeState=ANY,CYCLE
# Slurm starts it with an empty environment (no PATH), so everything comes from here and from
# /etc/gpufleet/health.env and health.env beside this script (later wins), written by the bootstrap:
#   GPUFLEET_PYTHON=/opt/gpufleet/venv/bin/python3   GPUFLEET_INSTANCE_TYPE=p5.48xlarge
#   GPUFLEET_FSX_MOUNT=/fsx   GPUFLEET_HEALTH_TEXTFILE=/var/lib/node_exporter/textfile/gpufleet_health_quick.prom
# A node may add settings of its own in health.d/<node name>.env.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/amazon/efa/bin
here=$(dirname "$(readlink -f "$0")")
node=${SLURMD_NODENAME:-$(hostname -s)}
export SLURMD_NODENAME=$node

for conf_dir in /etc/gpufleet "$here"; do
    if [ -r "$conf_dir/health.env" ]; then
        set -a
        # shellcheck source=/dev/null
        . "$conf_dir/health.env"
        set +a
    fi
    if [ -r "$conf_dir/health.d/$node.env" ]; then
        set -a
        # shellcheck source=/dev/null
        . "$conf_dir/health.d/$node.env"
        set +a
    fi
done

# Run from the bundle (<install dir>/gpufleet/lifecycle/health is here): PYTHONPATH=<install dir>
# imports it as gpufleet.lifecycle.
install_dir=$(cd "$here/../../.." && pwd)
if [ -d "$install_dir/gpufleet/lifecycle/health" ]; then
    export PYTHONPATH="$install_dir${PYTHONPATH:+:$PYTHONPATH}"
fi

python=${GPUFLEET_PYTHON:-/opt/gpufleet/venv/bin/python3}
if [ ! -x "$python" ]; then
    scontrol update nodename="$node" state=drain reason="gpufleet: health: no python at $python"
    exit 1
fi
exec "$python" -m gpufleet.lifecycle.health.slurm_hook
