"""A comparable fingerprint of a stored value (shared by the persistence test and its restore script)."""

import hashlib
import sys

import numpy as np


def digest(value: object) -> str:
    if type(value).__module__.startswith("torch"):
        return f"torch:{value.dtype}:{tuple(value.shape)}:" + hashlib.sha1(value.contiguous().view(-1).view(sys.modules['torch'].uint8).numpy().tobytes()).hexdigest()
    if isinstance(value, np.ndarray):
        return f"numpy:{value.dtype}:{value.shape}:" + hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()
    if isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
        return "arrays:" + ",".join(f"{name}={digest(array)}" for name, array in value.items())
    return f"object:{value!r}"
