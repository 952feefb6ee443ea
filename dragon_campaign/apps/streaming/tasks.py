"""The simulated task: the Rastrigin function, with an optional sleep standing in for real compute."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence


def rastrigin(x: Sequence[float], sleep: float = 0.0) -> float:
    """Rastrigin function (global minimum 0 at the origin); sleeps ``sleep`` seconds first."""
    if sleep > 0:
        time.sleep(sleep)
    return 10.0 * len(x) + sum(xi * xi - 10.0 * math.cos(2 * math.pi * xi) for xi in x)
