"""Errors raised by the steering runtime."""


class TimeoutException(BaseException):
    """No result arrived within the timeout.

    A BaseException, as in Colmena 0.7, so that an agent's ``except Exception:`` around its own work does
    not swallow a queue timeout; catch it by name.
    """


class KillSignalException(BaseException):
    """The queues were shut down (or suspended for a checkpoint): no more tasks are accepted or results come.

    A BaseException, as in Colmena 0.7, so that it ends an agent even through ``except Exception:``.
    """


class WorkerLost(RuntimeError):
    """The worker running a task died (killed, crashed, out of memory) before returning a result."""
