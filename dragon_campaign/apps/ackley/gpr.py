"""The surrogate: a Gaussian-process regression of the Ackley values seen so far (scikit-learn).

A Matern 5/2 kernel with per-dimension length scales plus a white-noise term; targets are normalized.
Hyperparameters that end on a bound are expected here (a length scale at its maximum marks a dimension
the data do not resolve yet; Ackley is exact, so the noise goes to its minimum), so scikit-learn's
convergence warnings about them are silenced.
Fitting is cubic in the number of results, which stays small here (hundreds), and runs either in the
thinker or as a task on another pool (``fit_gpr`` is a plain function so that either can call it).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel


def fit_gpr(points: Sequence[Sequence[float]], values: Sequence[float], seed: int = 0) -> GaussianProcessRegressor:
    """A GPR fitted to these results; its ``predict`` ranks the points still waiting."""
    x = np.asarray(points, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if len(x) < 2 or len(x) != len(y):
        raise ValueError(f"A GPR needs at least two results with one value each, got {len(x)} points and {len(y)} values")
    kernel = ConstantKernel(1.0) * Matern(length_scale=np.full(x.shape[1], 10.0), length_scale_bounds=(1e-2, 1e3), nu=2.5) \
        + WhiteKernel(1e-2, noise_level_bounds=(1e-8, 1e1))
    model = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)
