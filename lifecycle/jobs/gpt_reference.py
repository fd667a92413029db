"""Reference training job: a small GPT on synthetic tokens, DDP or FSDP2, checkpointed and resumable.

    torchrun --nproc_per_node 2 -m gpufleet.lifecycle.jobs.gpt_reference --steps 40 --ckpt-dir /fsx/ckpt/demo

Kill any worker (or the node) and start it again with the same arguments: it resumes from the newest
complete checkpoint and ends with the same parameters, bit for bit, as a run never interrupted.
SIGTERM/SIGUSR1 make it save at the next step boundary and exit with REQUEUE_EXIT_CODE (143).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gpufleet.lifecycle.jobs.data import SyntheticTokens
from gpufleet.lifecycle.jobs.model import GPT, GPTConfig
from gpufleet.lifecycle.runtime.checkpoint import CheckpointConfig, CheckpointManager, SaveRecord
from gpufleet.lifecycle.runtime.distributed import DistInfo, init_distributed, shutdown_distributed
from gpufleet.lifecycle.runtime.metrics import MetricsConfig, MetricsReporter
from gpufleet.lifecycle.runtime.publish import publish_checkpoint
from gpufleet.lifecycle.runtime.signals import (
    REQUEUE_EXIT_CODE,
    StopRequest,
    exit_on_signals,
    exit_stopped,
    requeue_slurm_job,
)
from gpufleet.lifecycle.runtime.state import TrainState, app_state
from gpufleet.lifecycle.runtime.storage import LocalStorage


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpt_reference", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40, help="total optimizer steps")
    env_dir = os.environ.get("GPUFLEET_CHECKPOINT_DIR")  # set by gpufleet launch
    p.add_argument("--ckpt-dir", required=env_dir is None, default=env_dir,
                   help="checkpoint folder shared by all nodes (default: $GPUFLEET_CHECKPOINT_DIR)")
    p.add_argument("--ckpt-every", type=int, default=int(os.environ.get("GPUFLEET_CHECKPOINT_INTERVAL", "10")),
                   help="checkpoint interval in steps (default: $GPUFLEET_CHECKPOINT_INTERVAL or 10)")
    p.add_argument("--keep-last", type=int, default=3, help="committed checkpoints to keep")
    p.add_argument("--async-ckpt", action="store_true", help="save in the background")
    p.add_argument("--parallel", choices=("ddp", "fsdp"), default="ddp")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8, help="sequences per rank per step")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dump-final", help="write the final full parameters here (rank 0, torch.save)")
    p.add_argument("--progress-dir", help="each rank writes '<pid> <step> <restart>' to rank<N> here")
    p.add_argument("--metrics-textfile", help="Prometheus textfile path (rank 0)")
    p.add_argument("--step-sleep", type=float, default=0.0,
                   help="pad each step by this many seconds (lets tests land kills mid-run)")
    p.add_argument("--teardown-timeout", type=float, default=60.0,
                   help="seconds a finished rank waits for its peers at the final barrier")
    return p.parse_args(argv)


def wrap(model: nn.Module, parallel: str, info: DistInfo) -> nn.Module:
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [info.local_rank] if info.device.type == "cuda" else None
        # find_unused_parameters keeps gradient bucketing the same before and after a resume, so
        # the ring all-reduce sums in the same order (bitwise resume beyond 2 ranks).
        return DDP(model, device_ids=ids, find_unused_parameters=True)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(info.device.type, (info.world_size,))
    for block in model.blocks:  # type: ignore[attr-defined]
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def lr_lambda(total: int):
    warmup = max(1, total // 10)

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return f


def write_progress(folder: str | None, info: DistInfo, step: int) -> None:
    if not folder:
        return
    path = Path(folder) / f"rank{info.rank}"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{os.getpid()} {step} {info.restart_count}\n")
    os.replace(tmp, path)


def dump_final(model: nn.Module, path: str, rank: int) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        torch.save({k: v.detach().clone() for k, v in full.items()}, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = init_distributed()
    if args.progress_dir:
        Path(args.progress_dir).mkdir(parents=True, exist_ok=True)
    metrics = MetricsReporter(MetricsConfig(job="gpt_reference", textfile=args.metrics_textfile,
                                            enable=info.rank == 0))
    cfg = GPTConfig(seq_len=args.seq_len, dim=args.dim, num_layers=args.layers)
    torch.manual_seed(args.seed)  # same initial weights on every rank
    model = wrap(GPT(cfg).to(info.device), args.parallel, info)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    train = TrainState(torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(args.steps)))
    loader = SyntheticTokens(vocab_size=cfg.vocab_size, seq_len=cfg.seq_len,
                             batch_size=args.batch_size, seed=args.seed * 1000 + info.rank)
    torch.manual_seed(args.seed * 1000 + info.rank)  # per-rank dropout stream

    def on_saved(rec: SaveRecord) -> None:
        metrics.checkpoint(rec.step, mode=rec.mode, save_s=rec.total_s, stall_s=rec.stall_s)
        if info.rank == 0:
            publish_checkpoint(rec.total_s)  # the healer's grace after its checkpoint signal

    ckpt = CheckpointManager(
        CheckpointConfig(folder=args.ckpt_dir, interval=args.ckpt_every, keep_last=args.keep_last,
                         enable_async=args.async_ckpt),
        LocalStorage(args.ckpt_dir), on_saved=on_saved)
    state = app_state(info.rank, model, optimizer, train, loader, info.device)
    resumed = ckpt.load(state)
    stop = StopRequest()
    stop.install()
    metrics.event("start", rank=info.rank, world_size=info.world_size, restart=info.restart_count,
                  resumed_from=resumed, parallel=args.parallel, params=sum(p.numel() for p in model.parameters()))

    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if info.device.type == "cuda"
                else contextlib.nullcontext())
    tokens_per_step = args.batch_size * cfg.seq_len * info.world_size
    model.train()
    exit_code = 0
    while train.step < args.steps:
        started = time.perf_counter()
        x, y = (t.to(info.device) for t in loader.next_batch())
        with autocast:
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train.scheduler.step()
        train.step += 1
        if args.step_sleep:
            time.sleep(args.step_sleep)
        ckpt.poll()
        if ckpt.due(train.step, args.steps):
            ckpt.save(train.step, state)
        write_progress(args.progress_dir, info, train.step)
        metrics.step(train.step, step_s=time.perf_counter() - started, tokens=tokens_per_step,
                     loss=loss.item(), restarts=info.restart_count)
        if stop.agreed(info.device) and train.step < args.steps:
            if ckpt.last_saved_step != train.step:  # decided without I/O: every rank agrees
                ckpt.save(train.step, state, force_sync=True)
            ckpt.wait()
            # USR1 is the early warning (time limit, rebalancer): come back. SIGTERM is scancel or
            # Slurm's own requeue/kill, which must not be turned into a requeue.
            requeued = requeue_slurm_job() if info.rank == 0 and stop.signum == signal.SIGUSR1 else None
            metrics.event("stopping", step=train.step, signal=stop.signum, exit_code=REQUEUE_EXIT_CODE,
                          slurm_requeued=requeued)
            exit_code = REQUEUE_EXIT_CODE
            break
    ckpt.wait()
    exit_on_signals()  # the loop is over and its last save committed: a SIGTERM now ends the worker
    if exit_code == 0:
        if args.dump_final:
            dump_final(model, args.dump_final, info.rank)
        metrics.event("finished", step=train.step)
    if not shutdown_distributed(args.teardown_timeout):
        print(f"rank {info.rank}: the process group was not torn down within {args.teardown_timeout:g} s "
              "(a peer missing at the final barrier); leaving without it", file=sys.stderr, flush=True)
    return exit_code


if __name__ == "__main__":
    # Finished or stopped, the work is committed: leave without the interpreter's finalization,
    # which waits on an abandoned process group and costs seconds with torch (signals.exit_stopped).
    exit_stopped(main())
