"""Synthetic token streams generated from a seed: a loader whose position can be checkpointed."""

from __future__ import annotations

from typing import Any

import torch


class SyntheticTokens:
    """Batches of arithmetic token sequences (start and stride random per row, mod vocab).

    The model can learn them, so the loss falls; each rank draws from its own Generator, whose state
    and the number of batches drawn are the loader's checkpoint state.
    """

    def __init__(self, *, vocab_size: int, seq_len: int, batch_size: int, seed: int) -> None:
        self.vocab_size, self.seq_len, self.batch_size = vocab_size, seq_len, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.position = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        g, v = self.generator, self.vocab_size
        start = torch.randint(v, (self.batch_size, 1), generator=g)
        stride = torch.randint(1, 8, (self.batch_size, 1), generator=g)
        tokens = (start + stride * torch.arange(self.seq_len + 1)) % v
        self.position += 1
        return tokens[:, :-1], tokens[:, 1:]

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])
        self.generator.set_state(state["generator"])
