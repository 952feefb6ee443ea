"""The task: the Ackley function, behind a lognormally distributed sleep that emulates uneven run times.

Ackley (global minimum 0 at the origin, many local minima around it) in ``n`` dimensions:

    f(x) = -a exp(-b sqrt(mean(x_i^2))) - exp(mean(cos(c x_i))) + a + e,   a = 20, b = 0.2, c = 2 pi

usually searched over [-32.768, 32.768]^n.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

DOMAIN = 32.768


def ackley(x: Sequence[float]) -> float:
    """The Ackley function (0 at the origin, about 22.3 at most in its domain)."""
    point = np.asarray(x, dtype=np.float64)
    if point.ndim != 1 or point.size == 0:
        raise ValueError(f"Ackley takes a non-empty vector, got shape {point.shape}")
    return float(-20.0 * np.exp(-0.2 * np.sqrt(np.mean(point**2))) - np.exp(np.mean(np.cos(2 * np.pi * point))) + 20.0 + math.e)


def lognormal_parameters(mean: float, variance: float) -> tuple[float, float]:
    """(mu, sigma) of the normal whose exponential has this mean and variance."""
    if mean <= 0:
        raise ValueError(f"The mean run time must be positive, got {mean}")
    sigma = math.sqrt(math.log1p(variance / mean**2))
    return math.log(mean) - sigma**2 / 2, sigma


def run_time(mean: float, variance: float, seed: int) -> float:
    """The emulated run time of one task: lognormal with this mean and variance, drawn from ``seed``."""
    if variance == 0:
        return mean
    mu, sigma = lognormal_parameters(mean, variance)
    return float(np.random.default_rng(seed).lognormal(mu, sigma))


def evaluate(x: Sequence[float], runtime: float, runtime_var: float, seed: int) -> float:
    """The task body: sleep for the emulated run time, then return Ackley at ``x``."""
    time.sleep(run_time(runtime, runtime_var, seed))
    return ackley(x)
