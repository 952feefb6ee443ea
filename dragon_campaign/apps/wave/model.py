"""The surrogate being trained: four same-padded convolutions with ReLU between them."""

from __future__ import annotations

import torch
from torch import nn


class WaveCNN(nn.Module):
    """Predicts the next wave field from the current one; ``kernel_size`` is the varied hyper-parameter."""

    def __init__(self, kernel_size: int = 3, channels: int = 16) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size, padding="same"),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size, padding="same"),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size, padding="same"),
            nn.ReLU(),
            nn.Conv2d(channels, 1, kernel_size, padding="same"),
        )

    def forward(self, field: torch.Tensor) -> torch.Tensor:
        """The next frame predicted from this one."""
        return self.layers(field)
