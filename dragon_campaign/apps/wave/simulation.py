"""The toy simulation: a circular wave on a square grid, u(r, t) = sin(2r - f t) / (r + 1).

Each time step emits one training pair for an autoregressive model: the field at step t (input) and at
step t + 1 (output). Simulations differ by frequency and by the position of the wave's centre, both
derived from the simulation id, so every run of a campaign produces the same data.
"""

from __future__ import annotations

import time

import numpy as np

TIME_STEP = 0.1


def wave_field(grid_size: int, t: float, frequency: float, centre: tuple[float, float], rows: slice = slice(None)) -> np.ndarray:
    """The field at time ``t`` on the grid, or on a band of its rows (what one MPI rank computes)."""
    axis = np.linspace(-1.0, 1.0, grid_size, dtype=np.float64)
    x, y = np.meshgrid(axis[rows] - centre[0], axis - centre[1], indexing="ij")
    r = np.sqrt(x * x + y * y) * grid_size / 8.0
    return (np.sin(2.0 * r - frequency * t) / (r + 1.0)).astype(np.float32)


def parameters(sim_id: int) -> tuple[float, tuple[float, float]]:
    """The frequency and centre of a simulation's wave, derived from its id."""
    rng = np.random.default_rng(sim_id)
    return 1.0 + 0.25 * sim_id, (float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.5, 0.5)))


def simulate(sim_id: int, grid_size: int, num_steps: int, sim_sleep: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Run one simulation; returns (inputs, outputs), each of shape (num_steps, 1, grid_size, grid_size).

    ``sim_sleep`` seconds per step emulate the compute of a real simulation (0.5 s in the original study).
    """
    frequency, centre = parameters(sim_id)
    frames = np.empty((num_steps + 1, 1, grid_size, grid_size), dtype=np.float32)
    for step in range(num_steps + 1):
        frames[step, 0] = wave_field(grid_size, step * TIME_STEP, frequency, centre)
        if sim_sleep > 0 and step < num_steps:
            time.sleep(sim_sleep)
    return frames[:-1].copy(), frames[1:].copy()


def data_bytes(num_sims: int, grid_size: int, num_steps: int) -> int:
    """Bytes of training data a campaign produces (inputs and outputs of every simulation)."""
    return num_sims * 2 * num_steps * grid_size * grid_size * 4
