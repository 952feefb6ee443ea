"""Start a script under the Dragon runtime as a child, so that the campaign, not Dragon, decides what Ctrl-C means.

Why not ``exec dragon script.py``: in a terminal the ``dragon`` launcher is in the foreground process
group, so a typed Ctrl-C reaches it first and it tears the runtime down at once (no checkpoint, processes
and ``/dev/shm`` segments sometimes left behind); and started from ``setsid``, ``dragon`` is a session
leader, whose local services cannot make their own process group, so the runtime never comes up.

:func:`run_under_dragon` stays in the foreground and runs ``dragon`` in a process group of its own, with
no terminal input. Its head process (the campaign) writes its pid into the control directory named by
``$DRAGON_CAMPAIGN_CONTROL`` (see :mod:`dragon_campaign.interrupts`). Then:

* SIGINT, SIGTERM and SIGHUP are forwarded to the campaign process: the first checkpoints and stops the
  campaign, the second stops its workers at once. A signal that comes before the campaign process exists
  is held until it does (it then stops during set-up). A third signal tears the runtime down the way
  Dragon does on Ctrl-C, a fourth kills it.
* If this process dies, the launcher gets SIGTERM (``PR_SET_PDEATHSIG``) instead of running on unowned.
* When ``dragon`` has exited, processes of its process group that are still alive are killed and its
  ``/dev/shm`` segments (the runtime's pools, and the DDicts its stores created, listed in the control
  directory) are removed, each named in a warning. Other runtimes' segments on the node are left alone.

Nothing here imports Dragon: it runs before the runtime exists.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CONTROL_ENV = "DRAGON_CAMPAIGN_CONTROL"
HEAD_FILE = "head.json"  # {"pid": ..., "host": ...}, written by the campaign process when it starts
SEGMENTS_FILE = "segments"  # /dev/shm name prefixes of the stores' segments, one a line, from ddict_store
SEGMENT_REGISTRY_ENV = "DDICT_STORE_SEGMENTS"  # ddict_store.workarounds.SEGMENT_REGISTRY_ENV (not imported: it needs Dragon)
SHM = Path("/dev/shm")
TEARDOWN_GRACE_S = 45.0  # how long processes of the runtime get to exit after dragon returned (a head process whose
# runtime aborted may still be giving up its store, ddict_store.store.DESTROY_TIMEOUT_S, and writing its outputs)
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class _Runtime:
    """The launched ``dragon`` and what identifies the things it owns."""

    launcher: subprocess.Popen
    control: Path
    started: float
    uid: int = field(default_factory=os.getuid)

    def head(self) -> dict | None:
        try:
            return json.loads((self.control / HEAD_FILE).read_text())
        except (OSError, ValueError):
            return None

    def processes(self) -> list[int]:
        """Live processes of this runtime: those in the launcher's process group (Dragon starts its services,
        the head process and every worker there on this node). ``DRAGON_RT_UID`` would not do: two runtimes
        on one node can share it."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[2]) == self.launcher.pid:  # state, process group
                found.append(int(entry.name))
        return found

    def segments(self) -> list[Path]:
        """/dev/shm segments of this runtime: its own pools and its stores' (DDicts, buffer pools), written since it started."""
        prefixes = [f"DD{str(self.uid)[-3:]}{str(self.launcher.pid)[-3:]}"]  # Dragon's runtime_pool_name
        try:
            prefixes += (self.control / SEGMENTS_FILE).read_text().split()
        except OSError:
            pass
        ours = []
        for path in SHM.iterdir() if SHM.is_dir() else []:
            try:
                if path.name.startswith(tuple(prefixes)) and path.stat().st_mtime >= self.started - 1:
                    ours.append(path)
            except OSError:
                continue
        return ours


def run_under_dragon(script: str | Path, argv: Sequence[str], dragon: str = "dragon") -> int:
    """Run ``dragon script argv...`` as described above; returns the launcher's exit status."""
    control = Path(tempfile.mkdtemp(prefix="dragon-campaign-"))
    env = {**os.environ, CONTROL_ENV: str(control), SEGMENT_REGISTRY_ENV: str(control / SEGMENTS_FILE)}
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum)) for sig in FORWARDED}
    try:
        launcher = subprocess.Popen([dragon, str(script), *argv], env=env, stdin=subprocess.DEVNULL,
                                    process_group=0, preexec_fn=_die_with_parent)
    except FileNotFoundError:
        print(f"{dragon}: not found; is the virtual environment's bin/ on PATH? (bash run.sh does that)", file=sys.stderr)
        return 2
    runtime = _Runtime(launcher, control, time.time())
    try:
        return _forward_until_exit(runtime, received)
    finally:
        try:  # signals that come now are only recorded: the clean-up must finish
            _remove_leftovers(runtime)
        finally:
            shutil.rmtree(control, ignore_errors=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _forward_until_exit(runtime: _Runtime, received: list[int]) -> int:
    """Wait for the launcher, handing each signal to the campaign (or, from the third on, to the runtime)."""
    handled = 0
    while True:
        try:
            return runtime.launcher.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass
        while handled < len(received):
            head = runtime.head()
            if handled < 2 and head is None:
                break  # held until the campaign process exists
            signum = received[handled]
            handled += 1
            name = signal.Signals(signum).name
            local = head is not None and head.get("host") == socket.gethostname()
            try:
                if handled == 1 and local:
                    _say(f"{name}: stopping the campaign (it checkpoints where it can); again to stop its workers at once")
                    os.kill(head["pid"], signum)
                elif handled == 2 and local:
                    _say(f"{name} again: stopping the workers now; once more tears the Dragon runtime down")
                    os.kill(head["pid"], signum)
                elif handled <= 3:  # a head process on another node cannot be signalled from here
                    _say(f"{name}: tearing the Dragon runtime down (no checkpoint)")
                    os.kill(runtime.launcher.pid, signal.SIGINT)
                else:
                    _say(f"{name}: killing the Dragon runtime")
                    os.killpg(runtime.launcher.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _remove_leftovers(runtime: _Runtime) -> None:
    """Kill what the runtime left running and remove its segments, naming each."""
    if runtime.launcher.poll() is None:  # we are leaving early (an exception here): take the runtime down
        runtime.launcher.send_signal(signal.SIGINT)
        try:
            runtime.launcher.wait(TEARDOWN_GRACE_S)
        except subprocess.TimeoutExpired:
            runtime.launcher.kill()
            runtime.launcher.wait()
    deadline = time.monotonic() + TEARDOWN_GRACE_S
    while (alive := runtime.processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in alive:
        try:
            name = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
            os.kill(pid, signal.SIGKILL)
            _say(f"killed process {pid} left behind by the runtime: {name}")
        except (OSError, ProcessLookupError):
            continue
    if alive:
        time.sleep(0.5)
    for path in runtime.segments():
        try:
            used = path.stat().st_blocks * 512
            path.unlink()
            _say(f"removed {path} ({used / 2**20:.0f} MiB in use) left behind by the runtime")
        except OSError:
            continue


def _say(message: str) -> None:
    try:
        print(f"[dragon-campaign] {message}", file=sys.stderr, flush=True)
    except OSError:  # the terminal is gone (hung up): the clean-up goes on regardless
        pass
