"""Cross-node reads: an array written on one node and read on another, through ddict_store and through
ProxyStore over the DDict, against the limit of the link (a plain TCP socket copy between the two nodes).

    bash comparisons/cross_node.sh [--sizes 16 64] [--repeats 3]   # starts the emulated two-node cluster

Runs under a Dragon runtime of two nodes (the multi-node tier's emulated cluster: network namespaces
joined by a bridge, Dragon's HSTA transport over TCP). Every read is timed in the reader on the second
node and includes a uint64 checksum over every byte; each repeat writes a fresh key; the first repeat is
discarded; the median is reported. Paths:

* TCP socket copy: a process on the first node sends the array's bytes over one TCP connection to a
  process on the second, which receives them into a reused buffer (the link's limit for one stream);
* Dragon queue: the array's bytes put on a Dragon ``Queue`` by the first node and taken by the second
  (Dragon's own transport between nodes, without the DDict: the floor under both store paths);
* ddict_store: ``put`` on the first node (its buffer there and, on a runtime of several nodes, chunks
  spread over every node's DDict manager), ``get`` on the second (the chunks, read in parallel);
* ProxyStore + DDictConnector: ``ddict_proxy_store`` on the first node, the proxy resolved on the second.

Writes <output>/cross_node.md and .csv.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from common import provenance, two_node_hosts, write_csv

MB = 2**20
PORT = 47_001


def checksum(array: Any) -> int:
    return int(np.asarray(array).reshape(-1).view(np.uint64).sum())


def make(nbytes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(nbytes // 8)


# -- run on the first node ----------------------------------------------------------------------------------
def write_store(handle: str, key: str, nbytes: int, seed: int) -> tuple[str, int]:
    from ddict_store import attached

    array = make(nbytes, seed)
    attached(handle).namespace("cross").put(key, array)
    return socket.gethostname(), checksum(array)


def write_proxy(handle: str, nbytes: int, seed: int) -> tuple[str, int, bytes]:
    import pickle

    from proxystore.store import get_store

    from ddict_store import attached
    from ddict_store.connector import ddict_proxy_store

    store = get_store("cross-node") or ddict_proxy_store("cross-node", attached(handle), register=True, cache_size=0)
    array = make(nbytes, seed)
    return socket.gethostname(), checksum(array), pickle.dumps(store.proxy(array, populate_target=False))


def send_queue(queue: Any, nbytes: int, seed: int) -> tuple[str, int]:
    array = make(nbytes, seed)
    queue.put(array.tobytes())
    return socket.gethostname(), checksum(array)


def send_socket(reader_host: str, nbytes: int, seed: int) -> tuple[str, int]:
    array = make(nbytes, seed)
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = socket.create_connection((reader_host, PORT))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with connection:
        connection.sendall(memoryview(array).cast("B"))
    return socket.gethostname(), checksum(array)


# -- run on the second node ---------------------------------------------------------------------------------
def read_store(handle: str, key: str) -> tuple[str, float, int]:
    from ddict_store import attached

    namespace = attached(handle).namespace("cross")
    start = time.perf_counter()
    total = checksum(namespace.get(key))
    return socket.gethostname(), time.perf_counter() - start, total


def read_proxy(pickled: bytes) -> tuple[str, float, int]:
    import pickle

    proxy = pickle.loads(pickled)
    start = time.perf_counter()
    total = checksum(proxy)
    return socket.gethostname(), time.perf_counter() - start, total


def read_queue(queue: Any) -> tuple[str, float, int]:
    start = time.perf_counter()
    total = checksum(np.frombuffer(queue.get(timeout=600), dtype=np.float64))
    return socket.gethostname(), time.perf_counter() - start, total


_buffers: dict[int, bytearray] = {}


def receive_socket(nbytes: int) -> tuple[str, float, int]:
    """Accept one connection and receive ``nbytes`` into a reused buffer; timed from the first byte."""
    buffer = _buffers.setdefault(nbytes, bytearray(nbytes))
    view = memoryview(buffer)
    with socket.create_server(("0.0.0.0", PORT), reuse_port=True) as server:
        connection, _ = server.accept()
        with connection:
            received = connection.recv_into(view, nbytes)
            start = time.perf_counter()
            while received < nbytes:
                received += connection.recv_into(view[received:], nbytes - received)
    total = checksum(np.frombuffer(buffer, dtype=np.float64))
    return socket.gethostname(), time.perf_counter() - start, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64], help="array sizes in MB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="results", help="folder for the .md and .csv (default results/)")
    args = parser.parse_args()
    hosts = two_node_hosts("cross_node.py")
    from dragon.infrastructure.policy import Policy
    from dragon.native.process import Process
    from dragon.native.queue import Queue

    from ddict_store import DDictStore

    writer_host, reader_host = hosts[:2]

    class NodeWorker:
        """A long-lived Dragon process on one node that runs the functions it is sent (starting a process per
        call on the emulated cluster takes tens of seconds)."""

        def __init__(self, host: str) -> None:
            self.commands, self.replies = Queue(), Queue()
            self.process = Process(target=_serve, args=(self.commands, self.replies), env={"PYTHONPATH": os.pathsep.join(sys.path)},
                                   policy=Policy(placement=Policy.Placement.HOST_NAME, host_name=host))
            self.process.start()

        def send(self, function: Any, *call_args: Any) -> None:
            self.commands.put((function, call_args))

        def reply(self) -> Any:
            ok, value = self.replies.get(timeout=600)
            if not ok:
                raise RuntimeError(value)
            return value

        def call(self, function: Any, *call_args: Any) -> Any:
            self.send(function, *call_args)
            return self.reply()

        def stop(self) -> None:
            self.commands.put(None)
            self.process.join(timeout=60)

    writer, reader = NodeWorker(writer_host), NodeWorker(reader_host)
    transport = Queue(maxsize=2)
    rows = []
    with DDictStore(buffer_bytes_per_node=(4 * max(args.sizes) + 256) * MB) as store:
        for size in args.sizes:
            nbytes = size * MB
            timings: dict[str, list[float]] = {"TCP socket copy (the link)": [], "Dragon queue": [], "ddict_store": [],
                                               "ProxyStore + DDictConnector": []}
            for rep in range(args.repeats + 1):
                reader.send(receive_socket, nbytes)  # it listens while the writer connects
                _, expected = writer.call(send_socket, reader_host, nbytes, rep)
                results = {"TCP socket copy (the link)": (*reader.reply(), expected)}
                _, expected = writer.call(send_queue, transport, nbytes, rep)  # waits in the queue for the reader
                results["Dragon queue"] = (*reader.call(read_queue, transport), expected)
                key = f"array-{size}-{rep}"
                _, expected = writer.call(write_store, store.handle, key, nbytes, rep)
                results["ddict_store"] = (*reader.call(read_store, store.handle, key), expected)
                _, expected, pickled = writer.call(write_proxy, store.handle, nbytes, rep)
                results["ProxyStore + DDictConnector"] = (*reader.call(read_proxy, pickled), expected)
                for path, (where, seconds, total, expected) in results.items():
                    if total != expected or where != reader_host:
                        raise RuntimeError(f"{path}: read on {where}, checksum {'ok' if total == expected else 'WRONG'}")
                    if rep:
                        timings[path].append(seconds)
                store.namespace("cross").delete(key)
                print(f"{size} MB repeat {rep}: " + ", ".join(f"{p} {r[1]:.3f} s" for p, r in results.items()), flush=True)
            for path, seconds in timings.items():
                median = statistics.median(seconds)
                rows.append({"path": path, "size_mb": size, "read_s": median, "read_gbps": nbytes / median / 1e9, "repeats": args.repeats})
        writer.stop()
        reader.stop()
    link = {row["size_mb"]: row["read_gbps"] for row in rows if row["path"].startswith("TCP")}
    for row in rows:
        row["ratio_to_link"] = row["read_gbps"] / link[row["size_mb"]]
    output = Path(args.output)
    write_csv(output / "cross_node.csv", rows)
    sizes = sorted({row["size_mb"] for row in rows})
    cell = {(row["path"], row["size_mb"]): row for row in rows}
    lines = ["# Cross-node reads on an emulated two-node cluster", "", *provenance(),
             f"- Runtime: two nodes ({writer_host} writes, {reader_host} reads): network namespaces on one 2-core VM joined by a "
             "bridge, Dragon's SSH launcher with HSTA over TCP (`bash comparisons/cross_node.sh`, the multi-node tier's cluster).",
             f"- Versions: dragonhpc {version('dragonhpc')}, proxystore {version('proxystore')}, numpy {np.__version__}",
             "- Method: the reader's timed region is obtaining the array plus a uint64 checksum over every byte (for the "
             "socket: from the first byte received to the checksum). Median of the repeats after one warm-up; fresh keys.",
             "", "| Path | " + " | ".join(f"{s} MB" for s in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for path in dict.fromkeys(row["path"] for row in rows):
        lines.append(f"| {path} | " + " | ".join(
            f"{cell[(path, s)]['read_gbps']:.2f} GB/s ({cell[(path, s)]['ratio_to_link']:.2f} of the link)" for s in sizes) + " |")
    queue = {row["size_mb"]: row["read_gbps"] for row in rows if row["path"] == "Dragon queue"}
    store = {row["size_mb"]: row["read_gbps"] for row in rows if row["path"] == "ddict_store"}
    lines += ["", "What limits it here: Dragon's own transport between the emulated nodes (HSTA over TCP, its agents on the "
              "same two cores as everything else) moves a queue message at "
              + ", ".join(f"{queue[s] / link[s]:.2f}" for s in sizes) + " of the socket's rate, and a ddict_store read reaches "
              + ", ".join(f"{store[s] / queue[s]:.2f}" for s in sizes) + " of the queue's (a read of a value held on the other "
              "node asks that node's DDict managers for its chunks, each a request and a reply through the same transport). "
              "How this maps to Polaris: nothing measured here carries over as a rate. A Polaris node has a pair of HPE "
              "Slingshot 11 adapters (200 Gb/s, 25 GB/s each; docs.alcf.anl.gov/polaris/hardware-overview/machine-overview) "
              "and 32 cores, with HSTA over the fabric (libfabric) on cores of its own. Dragon's published DDict figures "
              "(v0.12.1 on a Cray EX with one 200 Gb/s Slingshot NIC per node, DragonHPC/dragon doc/benchmarks/ddict.rst): "
              "gets and puts of large values reach about a third of the network's hardware bandwidth and scale linearly "
              "to 512 nodes; ddict_store reads a value's chunks with up to 4 threads per reader (`ddict_store/values.py`).", ""]
    (output / "cross_node.md").write_text("\n".join(lines))
    print("\n".join(lines))


def _serve(commands: Any, replies: Any) -> None:
    """A NodeWorker's loop: run each (function, args) it is sent and reply with the value or the error."""
    import traceback

    while (command := commands.get()) is not None:
        function, call_args = command
        try:
            replies.put((True, function(*call_args)))
        except Exception as exc:
            replies.put((False, f"{exc!r}\n{traceback.format_exc()}"))


if __name__ == "__main__":
    main()
