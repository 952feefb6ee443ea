"""One epoch of training over every sample produced, with an exact account of the data seen.

The account (sample count and an order-independent checksum: the XOR of a CRC32 per sample pair) lets a
test prove that a trainer saw every sample of every simulation, whichever data path delivered them.
"""

from __future__ import annotations

import time
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from dragon_campaign.apps.wave.model import WaveCNN

BATCH_SIZE = 4


@dataclass
class TrainingReport:
    """What one trainer saw and how long it took."""
    kernel_size: int
    samples: int
    checksum: int
    first_loss: float
    last_loss: float
    device: str
    train_seconds: float

    def as_dict(self) -> dict:
        """The report as a plain dict (a task's value)."""
        return asdict(self)


def sample_checksum(inputs: np.ndarray, outputs: np.ndarray) -> tuple[int, int]:
    """Count and XOR-of-CRC32 of the sample pairs in one simulation's arrays."""
    checksum = 0
    for x, y in zip(inputs, outputs, strict=True):
        checksum ^= zlib.crc32(np.ascontiguousarray(y).tobytes(), zlib.crc32(np.ascontiguousarray(x).tobytes()))
    return len(inputs), checksum


def as_tensor(array: np.ndarray, device: str) -> torch.Tensor:
    """The array as a tensor on ``device``, without a copy on the CPU.

    Arrays read in place from the store are read-only views; torch warns about those because it cannot
    forbid writes, and the model never writes its inputs.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def pick_device() -> str:
    """The visible GPU if there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def train_epoch(datasets: Iterable[tuple[np.ndarray, np.ndarray]], kernel_size: int, seed: int = 0,
                learning_rate: float = 1e-3, channels: int = 16, threads: int = 0) -> TrainingReport:
    """Train a fresh WaveCNN for one epoch (batch size 4, MSE, Adam) over every (inputs, outputs) pair,
    with ``threads`` torch threads (0: torch's default).
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    device = pick_device()
    model = WaveCNN(kernel_size, channels).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_function = nn.MSELoss()
    samples = checksum = 0
    losses: list[float] = []
    start = time.perf_counter()
    for inputs, outputs in datasets:
        count, crc = sample_checksum(inputs, outputs)
        samples += count
        checksum ^= crc
        x_all = as_tensor(inputs, device)
        y_all = as_tensor(outputs, device)
        for first in range(0, count, BATCH_SIZE):
            optimizer.zero_grad()
            loss = loss_function(model(x_all[first:first + BATCH_SIZE]), y_all[first:first + BATCH_SIZE])
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    return TrainingReport(kernel_size, samples, checksum, losses[0] if losses else float("nan"),
                          losses[-1] if losses else float("nan"), device, time.perf_counter() - start)
