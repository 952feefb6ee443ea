"""Errors of the data plane, each saying what went wrong in the user's terms."""


class StoreError(RuntimeError):
    """Base class of ddict_store errors."""


class StoreFullError(StoreError):
    """There is no room for a value: the message names the key, its size and the capacity."""


class StoreClosedError(StoreError):
    """The store was closed (detached) or destroyed."""


class UnsupportedTypeError(StoreError, TypeError):
    """The value cannot be stored; the message names its type."""
