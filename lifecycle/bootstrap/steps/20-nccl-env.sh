#!/bin/bash
# NCCL and EFA environment for every login shell and every Slurm job on the node.
# Parameters: GPUFLEET_EFA_INTERFACES (0: no EFA, NCCL uses sockets).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "$0")/../lib.sh"

nccl_env() {
    echo "# Written by gpufleet bootstrap (20-nccl-env). NCCL over EFA through aws-ofi-nccl."
    if [ "${GPUFLEET_EFA_INTERFACES:-0}" -gt 0 ]; then
        echo "FI_PROVIDER=efa"
        echo "FI_EFA_USE_DEVICE_RDMA=1"
        echo "FI_EFA_FORK_SAFE=1"
    fi
    echo "NCCL_SOCKET_IFNAME=^lo,docker,veth"
    echo "NCCL_DEBUG=WARN"
    # Restarted torchrun workers must not read dead peers' addresses from a shared store.
    echo "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"
    echo "LD_LIBRARY_PATH=/opt/amazon/ofi-nccl/lib:/opt/amazon/efa/lib:\${LD_LIBRARY_PATH:-}"
}

# The same settings as an EnvironmentFile (systemd units, Slurm) and as a login profile script.
nccl_env | grep -v '^LD_LIBRARY_PATH' | write_file /etc/gpufleet/nccl.env 0644
nccl_env | sed -e 's/^\([A-Z_]*=\)/export \1/' | write_file /etc/profile.d/gpufleet-nccl.sh 0644
