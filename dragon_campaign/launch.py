"""Start a script under the Dragon runtime as a child, so that the campaign, not Dragon, decides what Ctrl-C means.

Why not ``exec dragon script.py``: in a terminal the ``dragon`` launcher is in the foreground process
group, so a typed Ctrl-C reaches it first and it tears the runtime down at once (no checkpoint, processes
and ``/dev/shm`` segments sometimes left behind); and started from ``setsid``, ``dragon`` is a session
leader, whose local services cannot make their own process group, so the runtime never comes up.

``run_under_dragon`` stays in the foreground and runs ``dragon`` in a process group of its own, with
no terminal input. Its head process (the campaign) writes its pid into the control directory named by
``$DRAGON_CAMPAIGN_CONTROL`` (see ``dragon_campaign.interrupts``). Then:

* SIGINT, SIGTERM and SIGHUP are forwarded to the campaign process: the first checkpoints and stops the
  campaign, the second stops its workers at once. A signal that comes before the campaign process exists
  is held until it does (it then stops during set-up). A third signal tears the runtime down the way
  Dragon does on Ctrl-C, a fourth kills it.
* If this process dies (``kill -9``, the OOM killer), the launcher gets SIGTERM (``PR_SET_PDEATHSIG``)
  instead of running on unowned, and a *warden*, a small process in a session of its own started beside
  the launcher, does the clean-up below in this process's place (Dragon's SIGTERM teardown leaves the
  campaign process and its workers running).
* Once the campaign process has returned (it says so in the control directory), the runtime gets
  ``RUNTIME_EXIT_S`` to come down; a runtime that does not (seen once a worker was killed inside a DDict
  operation whose manager had died: its local services stop answering) is killed, and the campaign's exit
  status is returned.
* When ``dragon`` has exited, processes of its process group that are still alive are killed and its
  ``/dev/shm`` segments (the runtime's pools, and the DDicts its stores created, listed in the control
  directory) are removed, each named in a warning. Other runtimes' segments on the node are left alone.

Nothing here imports Dragon: it runs before the runtime exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
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

from dragon_campaign.sessions import terminate_with_parent

CONTROL_ENV = "DRAGON_CAMPAIGN_CONTROL"
HEAD_FILE = "head.json"  # {"pid": ..., "host": ...}, written by the campaign process when it starts
EXIT_FILE = "exit.json"  # {"status": ...}, written by the campaign process when its main function returns
SEGMENTS_FILE = "segments"  # /dev/shm name prefixes of the stores' segments, one a line, from ddict_store
SEGMENT_REGISTRY_ENV = "DDICT_STORE_SEGMENTS"  # ddict_store.workarounds.SEGMENT_REGISTRY_ENV (not imported: it needs Dragon)
SHM = Path("/dev/shm")
TEARDOWN_GRACE_S = 45.0  # how long processes of the runtime get to exit after dragon returned (a head process whose
# runtime aborted may still be giving up its store, ddict_store.store.DESTROY_TIMEOUT_S, and writing its outputs)
RUNTIME_EXIT_S = 30.0  # how long the runtime gets to come down once the campaign process is done, before it is killed
ORPHAN_GRACE_S = 5.0  # how long the warden lets processes of a runtime whose launcher is gone exit by themselves
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (state, ppid, pgrp, ...), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


@dataclass
class _Runtime:
    """The launched ``dragon`` and what identifies the things it owns."""

    launcher_pid: int
    control: Path
    started: float
    uid: int = field(default_factory=os.getuid)

    def head(self) -> dict | None:
        return self._read(HEAD_FILE)

    def exit_status(self) -> int | None:
        """The campaign process's exit status, once its main function has returned."""
        ended = self._read(EXIT_FILE)
        return None if ended is None else int(ended["status"])

    def _read(self, name: str) -> dict | None:
        try:
            return json.loads((self.control / name).read_text())
        except (OSError, ValueError, KeyError):
            return None

    def processes(self) -> list[int]:
        """Live processes of this runtime: those in the launcher's process group (Dragon starts its services,
        the head process and every worker there on this node). ``DRAGON_RT_UID`` would not do: two runtimes
        on one node can share it.
        """
        found = []
        for entry in Path("/proc").iterdir():
            fields = proc_stat(int(entry.name)) if entry.name.isdigit() else None
            if fields and fields[0] != "Z" and int(fields[2]) == self.launcher_pid:  # state, process group
                found.append(int(entry.name))
        return found

    def segments(self) -> list[Path]:
        """/dev/shm segments of this runtime: its own pools and its stores' (DDicts, buffer pools), written since it started."""
        prefixes = [f"DD{str(self.uid)[-3:]}{str(self.launcher_pid)[-3:]}"]  # Dragon's runtime_pool_name
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
                                    process_group=0, preexec_fn=terminate_with_parent)
    except FileNotFoundError:
        print(f"{dragon}: not found; is the virtual environment's bin/ on PATH? (bash run.sh does that)", file=sys.stderr)
        return 2
    runtime = _Runtime(launcher.pid, control, time.time())
    warden = _start_warden(runtime)
    try:
        return _forward_until_exit(launcher, runtime, received)
    finally:
        try:  # signals that come now are only recorded: the clean-up must finish
            _stop_launcher(launcher)
            _remove_leftovers(runtime)
        finally:
            shutil.rmtree(control, ignore_errors=True)
            if warden is not None:
                warden.kill()
                warden.wait()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _start_warden(runtime: _Runtime) -> subprocess.Popen | None:
    """The process that cleans up if this one is killed (see the module documentation)."""
    try:
        return subprocess.Popen([sys.executable, "-m", "dragon_campaign.launch", "--warden", str(os.getpid()),
                                 str(runtime.launcher_pid), str(runtime.control), repr(runtime.started)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        _say(f"could not start the warden ({exc}); if this process is killed, nothing will clean up after the runtime")
        return None


def _warden(watched_pid: int, runtime: _Runtime) -> None:
    """Wait for the launching process to end (after its own clean-up it stops us first); then give the
    launcher its SIGTERM teardown and remove what the runtime left.
    """
    _wait_for_exit(watched_pid, None)
    _wait_for_exit(runtime.launcher_pid, TEARDOWN_GRACE_S)
    _remove_leftovers(runtime, grace=ORPHAN_GRACE_S)  # without its launcher nothing of the runtime ends by itself
    shutil.rmtree(runtime.control, ignore_errors=True)


def _wait_for_exit(pid: int, timeout: float | None) -> None:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([pidfd], [], [], timeout)  # readable once the process has exited
    finally:
        os.close(pidfd)


def _forward_until_exit(launcher: subprocess.Popen, runtime: _Runtime, received: list[int]) -> int:
    """Wait for the launcher, handing each signal to the campaign (or, from the third on, to the runtime)."""
    handled = 0
    ended_at: float | None = None
    while True:
        try:
            code = launcher.wait(timeout=0.1)
            status = runtime.exit_status()
            return code if status is None else status
        except subprocess.TimeoutExpired:
            pass
        if ended_at is None and runtime.exit_status() is not None:
            ended_at = time.monotonic()
        elif ended_at is not None and time.monotonic() - ended_at > RUNTIME_EXIT_S:
            _say(f"the campaign ended (status {runtime.exit_status()}) but the Dragon runtime did not come down within "
                 f"{RUNTIME_EXIT_S:g} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(runtime.launcher_pid, signal.SIGKILL)
            ended_at = float("inf")  # once
        while handled < len(received):
            head = runtime.head()
            if handled < 2 and head is None:
                break  # held until the campaign process exists
            signum = received[handled]
            handled += 1
            name = signal.Signals(signum).name
            local_pid = head["pid"] if head is not None and head.get("host") == socket.gethostname() else None
            try:
                if handled == 1 and local_pid is not None:
                    _say(f"{name}: stopping the campaign (it checkpoints where it can); again to stop its workers at once")
                    os.kill(local_pid, signum)
                elif handled == 2 and local_pid is not None:
                    _say(f"{name} again: stopping the workers now; once more tears the Dragon runtime down")
                    os.kill(local_pid, signum)
                elif handled <= 3:  # a head process on another node cannot be signalled from here
                    _say(f"{name}: tearing the Dragon runtime down (no checkpoint)")
                    os.kill(runtime.launcher_pid, signal.SIGINT)
                else:
                    _say(f"{name}: killing the Dragon runtime")
                    os.killpg(runtime.launcher_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _stop_launcher(launcher: subprocess.Popen) -> None:
    """If we are leaving early (an exception here), take the runtime down the way Ctrl-C does in Dragon."""
    if launcher.poll() is None:
        launcher.send_signal(signal.SIGINT)
        try:
            launcher.wait(TEARDOWN_GRACE_S)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()


def _remove_leftovers(runtime: _Runtime, grace: float = TEARDOWN_GRACE_S) -> None:
    """Kill what the runtime left running (after ``grace`` seconds) and remove its segments, naming each."""
    deadline = time.monotonic() + grace
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
    from ddict_store.workarounds import remove_stale_caps  # here, not at the top: the launcher starts without Dragon

    for name in remove_stale_caps():
        _say(f"removed the cgroup {name} (a store's cap on a spinning thread) left behind by the runtime")


def _say(message: str) -> None:
    try:
        print(f"[dragon-campaign] {message}", file=sys.stderr, flush=True)
    except OSError:  # the terminal is gone (hung up): the clean-up goes on regardless
        pass


if __name__ == "__main__":  # the warden: python -m dragon_campaign.launch --warden PID LAUNCHER_PID CONTROL STARTED
    if len(sys.argv) != 6 or sys.argv[1] != "--warden":
        sys.exit("usage: python -m dragon_campaign.launch --warden PID LAUNCHER_PID CONTROL STARTED")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the launching process's to handle
    _warden(int(sys.argv[2]), _Runtime(int(sys.argv[3]), Path(sys.argv[4]), float(sys.argv[5])))
