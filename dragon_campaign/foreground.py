"""A campaign started with a bare ``dragon my_campaign.py`` in a terminal: Ctrl-C for the campaign, and a warden.

In a terminal, Dragon's launcher and the campaign's head process share the foreground process group, so a
typed Ctrl-C reaches the launcher too, which tears the runtime down at once: the campaign cannot stop
cleanly, and dragonhpc 0.15 leaves its pools in ``/dev/shm``. ``guard``, called by
``run_campaign`` in such a head process, does what ``dragon-campaign run``
does from outside (``dragon_campaign.launch``), from inside:

* a *relay*, a small child process in a process group of its own, becomes the terminal's foreground group
  and passes the terminal's SIGINT and SIGHUP to the head process, so Ctrl-C reaches only the campaign
  (the first stops it cleanly, the second stops its workers, a third is passed to Dragon's launcher, which
  tears the runtime down). The head process itself must stay in the launcher's process group: Dragon's
  local services learn of its exit with ``waitpid(0)``, which sees only their own group. When the head
  process exits, the relay gives the terminal back to the launcher's group and exits too;
* a warden in a session of its own waits for Dragon's launcher to exit and then removes what the runtime
  left: processes of the launcher's process group (only when the launcher leads it, as a shell's job does)
  and the runtime's segments in ``/dev/shm``.

Nothing happens under ``dragon-campaign run`` (it supervises the runtime itself), outside a runtime, on a
node other than the launcher's, or without a controlling terminal (the warden still runs where the
launcher is found). ``dragon-campaign run`` is still the way to get checkpoints on Ctrl-C, the run
directory and the report: the head process of a bare ``dragon`` cannot be told apart from Dragon's
teardown once the launcher has been signalled, which is why taking Ctrl-C away from it is the only fix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from dragon_campaign.launch import CONTROL_ENV, SEGMENT_REGISTRY_ENV, SEGMENTS_FILE, proc_stat

logger = logging.getLogger(__name__)

_guarded: int | None = None  # the launcher's pid, once guarded
_lock = threading.Lock()


def launcher_pid() -> int | None:
    """The pid of the ``dragon`` launcher this process descends from on this node (None if there is none)."""
    pid = os.getppid()
    while pid > 1:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if any(Path(arg.decode(errors="replace")).name == "dragon" for arg in argv[:2]):
            return pid
        fields = proc_stat(pid)
        if fields is None:
            return None
        pid = int(fields[1])
    return None


def guard() -> int | None:
    """In the head process of a bare ``dragon`` run: take Ctrl-C and start the warden (once; see above).
    Returns the launcher's pid when guarded, else None.
    """
    global _guarded
    if "DRAGON_MY_PUID" not in os.environ or CONTROL_ENV in os.environ:
        return None
    with _lock:
        if _guarded is not None:
            return _guarded
        launcher = launcher_pid()
        if launcher is None:
            return None
        _guarded = launcher
    _start_warden(launcher)
    if threading.current_thread() is threading.main_thread():
        _take_terminal(launcher)
    return launcher


def pass_to_launcher() -> None:
    """A third stop signal: let Dragon's launcher tear the runtime down, as it does on Ctrl-C."""
    if _guarded is not None:
        logger.warning("Stop signal again: tearing the Dragon runtime down (dragon's launcher)")
        with contextlib.suppress(ProcessLookupError):
            os.kill(_guarded, signal.SIGINT)


def _take_terminal(launcher: int) -> None:
    try:
        terminal = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return  # no controlling terminal: Ctrl-C cannot be typed
    try:
        group = os.getpgrp()
        if os.tcgetpgrp(terminal) != group or group != os.getpgid(launcher):
            return  # not the terminal's foreground job
    except OSError:
        return
    finally:
        os.close(terminal)
    try:
        subprocess.Popen([sys.executable, "-m", "dragon_campaign.foreground", str(os.getpid()), str(group)], process_group=0,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={key: value for key, value in os.environ.items() if not key.startswith("DRAGON_")})
    except OSError as exc:
        logger.warning(f"Could not take Ctrl-C from Dragon's launcher ({exc}): Ctrl-C tears the runtime down at once")
        return
    logger.info("Started by a bare dragon in a terminal: Ctrl-C stops this campaign cleanly (dragon-campaign run also "
                "checkpoints it and writes its report)")


def _foreground(terminal: int, group: int) -> None:
    """Make ``group`` the terminal's foreground group (from the background: SIGTTOU is blocked meanwhile)."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        os.tcsetpgrp(terminal, group)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _relay(head: int, launcher_group: int) -> None:
    """The relay's life: hold the terminal's foreground while the head process lives, passing its signals on."""
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(head, signum)

    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, forward)
    for sig in (signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)  # stopping or dumping the relay would leave the terminal to nobody
    try:
        watched = os.pidfd_open(head)
    except ProcessLookupError:
        return
    terminal = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    try:
        _foreground(terminal, os.getpgrp())
        select.select([watched], [], [])  # readable once the head process has exited
    finally:
        with contextlib.suppress(OSError):
            _foreground(terminal, launcher_group)
        os.close(terminal)


def _start_warden(launcher: int) -> None:
    """The warden of ``dragon_campaign.launch``, watching Dragon's launcher; stores register their segments for it.
    Neither it nor the relay may hold the head process's stdout or stderr: Dragon waits for them to close.
    """
    control = Path(tempfile.mkdtemp(prefix="dragon-campaign-bare-"))
    os.environ.setdefault(SEGMENT_REGISTRY_ENV, str(control / SEGMENTS_FILE))
    started = _start_time(launcher)
    try:
        subprocess.Popen([sys.executable, "-m", "dragon_campaign.launch", "--warden", str(launcher), str(launcher), str(control),
                          repr(started)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                         env={key: value for key, value in os.environ.items() if not key.startswith("DRAGON_")})
    except OSError as exc:
        logger.warning(f"Could not start the warden ({exc}): what the runtime leaves in /dev/shm stays there")


def _start_time(pid: int) -> float:
    """When a process started, in seconds since the epoch (from /proc, in clock ticks after boot)."""
    fields = proc_stat(pid)
    boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
    return boot + (float(fields[19]) / os.sysconf("SC_CLK_TCK") if fields else 0.0)


if __name__ == "__main__":  # the relay: python -m dragon_campaign.foreground HEAD_PID LAUNCHER_GROUP
    if len(sys.argv) != 3:
        sys.exit("usage: python -m dragon_campaign.foreground HEAD_PID LAUNCHER_GROUP")
    _relay(int(sys.argv[1]), int(sys.argv[2]))
