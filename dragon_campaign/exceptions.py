"""Errors raised by the steering runtime."""


class TimeoutException(TimeoutError):
    """No result arrived within the timeout (Colmena's name)."""


class KillSignalException(RuntimeError):
    """The queues were shut down: no more tasks are accepted."""


class WorkerLost(RuntimeError):
    """The worker running a task died (killed, crashed, out of memory) before returning a result."""
