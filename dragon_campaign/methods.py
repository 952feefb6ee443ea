"""Colmena 0.7's Python method wrappers: ``PythonMethod`` and ``PythonGeneratorMethod``.

The task server takes plain functions too (a plain generator function's value is the list of what it
yielded); these wrappers exist so that a Colmena campaign ports by changing imports, and so that a
generator can *stream*: with ``streaming_queue`` (Colmena's argument: any value turns streaming on; the
worker sends through its own channel, not through that object) or ``streaming=True``, each yielded item
reaches the thinker at once as a Result of its own with ``complete=False``, while the task runs; the final
Result (``complete=True``) holds the generator's return value if ``store_return_value``, else None.
Intermediate results are not written to results.jsonl (the final one is), and a checkpoint drops those
not yet taken: a task that carries on into the next job runs, and streams, from the start.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator, Iterable
from typing import Any


class PythonMethod:
    """A Python function under a name of its choosing (Colmena's ``PythonMethod``)."""

    def __init__(self, function: Callable[..., Any], name: str | None = None) -> None:
        self.function = function
        self.name = name or function.__name__

    @property
    def __name__(self) -> str:  # the task server names methods by __name__
        return self.name

    @property
    def __signature__(self) -> inspect.Signature:  # so that a ``_resources`` parameter is seen through the wrapper
        return inspect.signature(self.function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function (what a worker does)."""
        return self.function(*args, **kwargs)


class PythonGeneratorMethod(PythonMethod):
    """A generator function as a method (Colmena's ``PythonGeneratorMethod``).

    Args:
        function: A generator function (or any function returning an iterable).
        name: The method's name (default: the function's).
        store_return_value: Also keep the generator's return value: the task's value is ``(items, returned)``,
            or, when streaming, ``returned``.
        streaming_queue: Colmena's switch for streaming: anything but None streams.
        streaming: Stream each yielded item to the thinker as an intermediate result.
    """

    def __init__(self, function: Callable[..., Generator | Iterable], name: str | None = None, store_return_value: bool = False,
                 streaming_queue: object | None = None, streaming: bool = False) -> None:
        super().__init__(function, name)
        self.store_return_value = store_return_value
        self.streaming = streaming or streaming_queue is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the generator function and collect what it yields (what a worker does without streaming)."""
        return self.run(args, kwargs)

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any], emit: Callable[[Any], None] | None = None) -> Any:
        """Run to the end; the task's value. Streaming needs ``emit`` (a Dragon worker gives one): without it
        (called directly, or on an ExecutorPool) the items are collected as if not streaming.
        """
        streams = self.streaming and emit is not None
        items: list[Any] = []
        returned = self._drive(args, kwargs, emit if streams else items.append)  # type: ignore[arg-type]
        if streams:
            return returned if self.store_return_value else None
        return (items, returned) if self.store_return_value else items

    def _drive(self, args: tuple[Any, ...], kwargs: dict[str, Any], emit: Callable[[Any], None]) -> Any:
        """Call ``emit`` with each yielded item; return the generator's return value."""
        generator = self.function(*args, **kwargs)
        if not inspect.isgenerator(generator):
            for item in generator:
                emit(item)
            return None
        while True:
            try:
                item = next(generator)
            except StopIteration as stop:
                return stop.value
            emit(item)
