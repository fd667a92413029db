"""What a checkpoint holds, as DCP ``Stateful`` objects.

``app_state`` builds the dict handed to ``CheckpointManager.save/load``: model and optimizer
(sharded DTensors under FSDP2, replicated and de-duplicated by DCP under DDP), the scheduler and
step, and under a rank-specific key each rank's RNG states and data-loader position. DCP
de-duplicates equal keys across ranks, so per-rank state must carry the rank in its key.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.checkpoint.stateful import Stateful


class StatefulLoader(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ModelOptimizerState(Stateful):
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer

    def state_dict(self) -> dict[str, Any]:
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        return {"model": model_sd, "optim": optim_sd}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optim"])


class TrainState(Stateful):
    """Step counter and LR scheduler (the same on every rank)."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        self.step = 0
        self.scheduler = scheduler

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.scheduler.load_state_dict(state["scheduler"])


class RankState(Stateful):
    """This rank's RNG streams and data position: what makes a resumed run bitwise identical."""

    def __init__(self, loader: StatefulLoader, device: torch.device) -> None:
        self.loader, self.device = loader, device

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "loader": self.loader.state_dict(),
        }
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        self.loader.load_state_dict(state["loader"])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.device)


def app_state(rank: int, model: nn.Module, optimizer: torch.optim.Optimizer,
              train: TrainState, loader: StatefulLoader, device: torch.device) -> dict[str, Any]:
    return {
        "app": ModelOptimizerState(model, optimizer),
        "train": train,
        f"rank{rank}": RankState(loader, device),
    }
