"""Training metrics: JSON lines on stdout and a Prometheus textfile (node_exporter's collector)."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO


@dataclass(kw_only=True)
class MetricsConfig:
    """Where and how often the job reports."""

    job: str = "train"
    """Value of the ``job`` label on every Prometheus sample."""
    log_every: int = 1
    """Print a step line every this many steps (events are always printed)."""
    textfile: str | None = None
    """Path of the ``.prom`` file for node_exporter's textfile collector; None disables it."""
    enable: bool = True
    """Rank 0 reports; other ranks pass False and stay quiet."""


@dataclass
class _Gauges:
    step: int = 0
    step_seconds: float = 0.0
    tokens_per_second: float = 0.0
    loss: float = 0.0
    restarts: int = 0
    checkpoint_step: int = -1
    checkpoint_save_seconds: dict[str, float] = field(default_factory=dict)
    checkpoint_stall_seconds: dict[str, float] = field(default_factory=dict)


class MetricsReporter:
    def __init__(self, config: MetricsConfig, stream: TextIO | None = None) -> None:
        self.config = config
        self.stream = stream or sys.stdout
        self.gauges = _Gauges()

    def event(self, event_type: str, **fields: Any) -> None:
        if not self.config.enable:
            return
        record = {"ts": round(time.time(), 6), "event_type": event_type, **fields}
        self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()

    def step(self, step: int, *, step_s: float, tokens: int, loss: float, restarts: int) -> None:
        g = self.gauges
        g.step, g.step_seconds, g.loss, g.restarts = step, step_s, loss, restarts
        g.tokens_per_second = tokens / step_s if step_s > 0 else 0.0
        if step % max(1, self.config.log_every) == 0:
            self.event("step", step=step, step_s=round(step_s, 6),
                       tokens_per_s=round(g.tokens_per_second, 1), loss=round(loss, 6))
            self.write_textfile()

    def checkpoint(self, step: int, *, mode: str, save_s: float, stall_s: float) -> None:
        g = self.gauges
        g.checkpoint_step = step
        g.checkpoint_save_seconds[mode] = save_s
        g.checkpoint_stall_seconds[mode] = stall_s
        self.event("checkpoint", step=step, mode=mode, save_s=round(save_s, 6), stall_s=round(stall_s, 6))
        self.write_textfile()

    def render(self) -> str:
        g, job = self.gauges, self.config.job
        lines: list[str] = []

        def gauge(name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} gauge")
            for labels, value in samples:
                lines.append(f'{name}{{job="{job}"{labels}}} {value}')

        gauge("gpufleet_train_step", "Last completed training step.", [("", g.step)])
        gauge("gpufleet_train_step_seconds", "Wall time of the last step.", [("", g.step_seconds)])
        gauge("gpufleet_train_tokens_per_second", "Tokens per second over the last step, all ranks.",
              [("", g.tokens_per_second)])
        gauge("gpufleet_train_loss", "Loss of the last step.", [("", g.loss)])
        gauge("gpufleet_train_restarts", "Worker-group restarts by torchrun in this allocation.",
              [("", g.restarts)])
        gauge("gpufleet_checkpoint_last_step", "Step of the last committed checkpoint (-1: none).",
              [("", g.checkpoint_step)])
        gauge("gpufleet_checkpoint_save_seconds", "Seconds from start to commit of the last save.",
              [(f',mode="{m}"', v) for m, v in sorted(g.checkpoint_save_seconds.items())])
        gauge("gpufleet_checkpoint_stall_seconds", "Seconds the step loop was blocked by the last save.",
              [(f',mode="{m}"', v) for m, v in sorted(g.checkpoint_stall_seconds.items())])
        return "\n".join(lines) + "\n"

    def write_textfile(self) -> None:
        if not (self.config.enable and self.config.textfile):
            return
        path = Path(self.config.textfile)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.render())
        os.replace(tmp, path)  # the collector never reads a half-written file
