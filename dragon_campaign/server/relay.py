"""A node's relay: one process that carries the steering process's messages to the workers of its node and
theirs back, so that the steering process sends and receives one message per node where it would send and
receive one per worker.

The steering process still decides which worker runs which task, in priority order, and a worker still holds
only what its ``prefetch_seconds`` allows: the relay forwards, it does not schedule, so ``update_priority`` and
``cancel`` stay exact for every task not yet handed out, and exactly-once delivery rests on the same records.
What it saves is per-message work where it is dearest: a put of the steering process to a queue on another
node goes through Dragon's transport, and so does a remote worker's every result. With a relay, one dispatch
pass costs the steering process one put per node, and a burst of a node's results reaches it as one message.

Two threads:

* *down*: reads the inbox (on the relay's node): ``Attach`` (a new worker's task queue) or a list of
  ``Handoff`` (a pickled batch for one worker each), which it puts on those workers' queues, on this node,
  in the order they came; ``None`` ends it.
* *up* (the main thread): reads the node's result queue, which the node's workers put on and the steering
  process's monitor posts each of their exits on, behind their results, and forwards every message already
  there as one ``Relayed``; ``StopReceiver`` (posted at shutdown, after the node's workers have exited) ends
  the relay.

On a crowded node (see ``.crowded``) the relay plays the steering process's part there: it rings a worker's
doorbell after each put on its queue, and sleeps on a doorbell of its own that the workers ring after each
result, so neither the workers nor the relay spin or look at their queues (but for the moment's look of a
reader whose waits are short, as in the steering process). The inbox, which the steering
process fills from another node and cannot ring, is looked at between sleeps (``.reader``); a worker's
cancellations too.

The steering process joins the relay like a DDict manager: if it dies, the campaign stops and says why,
since the node's workers can no longer be fed; they are then stopped and their exits reported without it.
``$RELAY_ENV`` in its environment names its node (for ``ps``, py-spy and fault injection to find it).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from dragon_campaign.server.crowded import Crowding, Doorbell, Ringer, open_or_none
from dragon_campaign.server.reader import IDLE_POLL_S, SPIN_S, QueueReader, shortest_sleep
from dragon_campaign.server.worker import leave
from dragon_campaign.wire import Attach, Handoff, Relayed, StopReceiver, WorkerKey, dumps, loads

RELAY_ENV = "DRAGON_CAMPAIGN_RELAY"
# Messages: each carries at least one task that a worker of the node had room for, so the inbox never holds more
# than the node's workers may hold: at most max_prefetch + 1 tasks each, 2,080 for 32 workers at the default 64.
INBOX_SIZE = 4096
FORWARD_BATCH = 256  # the most messages of the node's workers forwarded as one
STOP = dumps(StopReceiver())


def relay_main(inbox: Any, node_results: Any, results: Any, crowding: Crowding) -> None:
    """Entry point of a relay process (``inbox``, ``node_results``: Dragon queues on its node; ``results``: the
    steering process's result queue; ``crowding.receiver``: on a crowded node, the doorbell its workers ring).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the campaign process decides what Ctrl-C means
    shortest = shortest_sleep(crowding.wanting, crowding.cores)
    down = threading.Thread(target=_forward_down, args=(QueueReader(inbox, crowded=crowding.crowded, shortest_s=shortest),),
                            name="relay-down", daemon=True)
    down.start()
    bell = open_or_none(Doorbell, crowding.receiver)
    _forward_up(QueueReader(node_results, crowded=crowding.crowded, shortest_s=shortest, watch_parent=True, bell=bell,
                            bell_timeout_s=IDLE_POLL_S, spin_s=SPIN_S), results)  # the monitor's notices and the stop are not rung
    leave()


def _forward_down(inbox: QueueReader) -> None:
    queues: dict[WorkerKey, tuple[Any, str | None]] = {}  # each worker's task queue and doorbell
    ringer = Ringer()
    while True:
        message: Attach | list[Handoff] | None = loads(inbox.get())
        if message is None:
            return
        if isinstance(message, Attach):
            queues[message.key] = (message.tasks, message.bell)
            continue
        bells = []
        for handoff in message:
            tasks, bell = queues[handoff.key]
            tasks.put(handoff.payload)
            if bell is not None:
                bells.append(bell)
        ringer.ring(*bells)


def _forward_up(node_results: QueueReader, results: Any) -> None:
    while True:
        messages = [node_results.get(), *node_results.take_ready(FORWARD_BATCH - 1)]
        stop = STOP in messages
        if stop:
            messages = messages[: messages.index(STOP)]
        if messages:
            results.put(dumps(Relayed(messages)), flush=True)
        if stop:
            return
