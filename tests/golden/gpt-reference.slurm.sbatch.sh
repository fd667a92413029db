#!/bin/bash
# Rendered by gpufleet from examples/gpt-reference.slurm.yaml. Re-render: gpufleet launch --dry-run.
#SBATCH --job-name=gpt-reference
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --partition=train-h100
#SBATCH --gpus-per-node=8
#SBATCH --time=04:00:00
#SBATCH --chdir=/fsx/code/gpufleet
#SBATCH --requeue
#SBATCH --signal=USR1@300
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out

set -uo pipefail
export GPUFLEET_JOB_NAME=gpt-reference
export GPUFLEET_CHECKPOINT_DIR=/fsx/checkpoints/gpt-reference
export GPUFLEET_CHECKPOINT_INTERVAL=200
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
export FI_PROVIDER=efa
export FI_EFA_USE_DEVICE_RDMA=1
export FI_EFA_FORK_SAFE=1
export NCCL_SOCKET_IFNAME='^docker,lo,veth'
export NCCL_DEBUG=WARN
# The node's bundle (gpufleet.lifecycle: the runtime, the reference job) lies under /opt/gpufleet.
export PYTHONPATH=/opt/gpufleet${PYTHONPATH:+:$PYTHONPATH}

# The rebalancer's `scancel --signal=USR1 --full` also reaches this shell: log it, do not die.
trap 'echo "gpufleet: USR1 received; workers checkpoint and requeue the job"' USR1
mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
# The node's address as slurmd registered it (a node name need not resolve).
head_addr=$(scontrol show node "${nodes[0]}" | sed -n 's/.*NodeAddr=\([^ ]*\).*/\1/p')
echo "gpufleet: job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0} on $SLURM_JOB_NODELIST; rendezvous $head_addr:29500"
srun --kill-on-bad-exit=1 torchrun --nnodes "$SLURM_NNODES" --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint "$head_addr:29500" --rdzv_id "$SLURM_JOB_ID" --max-restarts 3 --signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 -m gpufleet.lifecycle.jobs.gpt_reference --steps 5000 --parallel fsdp --async-ckpt --dim 1024 --layers 12 --seq-len 1024 --metrics-textfile /var/lib/node_exporter/textfile/gpt-reference.prom
rc=$?
echo "gpufleet: torchrun exited $rc"
exit $rc
