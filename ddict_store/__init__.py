"""ddict_store: the in-memory data plane of dragon_campaign, on Dragon's distributed dictionary (DDict).

Design, from what was measured on a 2-core VM with dragonhpc 0.15 (comparisons/transfer_bandwidth.py):

* A plain DDict put/get of a large array pickles it through a manager's channels (about 0.7 GB/s for
  128 MB), slower than the file system's page cache. So large values do not live in the DDict: they are
  copied once into a managed-memory pool on the writer's node (``ddict_store.buffers``) and the DDict
  holds a small descriptor. A reader on the same node attaches the allocation in ~0.03 ms and copies it
  at memcpy speed; first-touch page faults of the reader's destination array are the main remaining
  cost, which ``get(key, out=array)`` avoids for readers that reuse a buffer. Copies go in 8 MB blocks
  (a single 256 MB memcpy ran 3x slower here).
* A DDict lookup costs milliseconds (tens under load on a busy node), more than copying a few MB. ``put``
  therefore returns a ``ValueRef`` that holds the value's descriptor; tasks pass it instead of the
  key, and ``read(ref)`` on the writer's node copies straight from the buffer with no DDict traffic.
  Dragon refuses to attach a freed allocation, so a reader re-attaching after its copy knows the value
  was not deleted or overwritten meanwhile.
* A process maps pool memory page by page on first touch (about 1 GB/s here for writes, against 13 GB/s
  once mapped). ``map_buffers()`` maps the node's whole pool into a long-lived worker once, so that its
  writes and in-place reads (``copy=False``) run at memory speed afterwards.
* Each DDict operation is a round trip to a manager process (1-9 ms on a loaded 2-core VM). A dict of
  arrays is stored as one value (one buffer, one entry), so a task writing several arrays pays it once.
* dragonhpc 0.15's DDict orchestrator keeps a thread spinning; ``ddict_store.workarounds`` lowers the
  priority of all its threads so that it only takes idle cycles (it cost half of a 2-core node).
* Arrays and tensors are stored as raw bytes plus dtype/shape (``ddict_store.codec``), never pickled.
* Values bigger than one manager, and copies for readers on other nodes, are split into chunks spread
  over the managers and read in parallel by a few threads, each with a DDict client of its own
  (``ddict_store.chunk_readers``): threads sharing one client were slower and could stall.
* Keys live in namespaces so concurrent runs never collide; ``wait``-style reads poll with backoff.
* Through ProxyStore (``connector.ddict_proxy_store``), ProxyStore's own serializer would add three copies
  into fresh memory; ``ddict_store.frames`` pickles with out-of-band buffers written straight into the
  buffer pool and read back with one copy (or as views), so proxies move at the store's speed.

Public API: ``DDictStore`` (create; ``attach(handle)`` elsewhere, ``attached(handle)`` once per
process in task functions), ``Namespace``, ``ValueRef`` (what ``put`` returns; ``read(ref)``),
``publish_model`` / ``latest_model`` / ``model``, the ProxyStore connector ``DDictConnector`` (and
``ddict_proxy_store``), ``live_bytes()``, and
``checkpoint`` / ``restore`` for persistence across runtimes.
"""

from ddict_store.errors import StoreClosedError, StoreError, StoreFullError, UnsupportedTypeError
from ddict_store.models import latest_model, model, model_versions, publish_model
from ddict_store.persist import checkpoint, restore
from ddict_store.store import DDictStore, Namespace, attached
from ddict_store.values import ValueRef

__all__ = [
    "DDictStore",
    "Namespace",
    "StoreClosedError",
    "StoreError",
    "StoreFullError",
    "UnsupportedTypeError",
    "ValueRef",
    "attached",
    "checkpoint",
    "latest_model",
    "model",
    "model_versions",
    "publish_model",
    "restore",
]
