"""Run a command the way a user at a terminal does: in a pseudo-terminal that is its controlling terminal,
so that typing Ctrl-C (``\\x03``) makes the terminal driver send SIGINT to the foreground process group."""

from __future__ import annotations

import fcntl
import os
import pty
import subprocess
import termios
import threading
from pathlib import Path

CTRL_C = b"\x03"


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """``command`` in a new session with a pseudo-terminal; its output goes to ``log``."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None, cwd: str | Path | None = None) -> None:
        self.log = log
        self._master, slave = pty.openpty()
        self.process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                                        start_new_session=True, preexec_fn=_take_terminal)
        os.close(slave)
        self._reader = threading.Thread(target=self._copy_output, daemon=True)
        self._reader.start()

    def _copy_output(self) -> None:
        with open(self.log, "ab") as out:
            while True:
                try:
                    chunk = os.read(self._master, 65536)
                except OSError:  # EIO: every process holding the terminal has exited
                    return
                if not chunk:
                    return
                out.write(chunk)
                out.flush()

    def type(self, keys: bytes) -> None:
        os.write(self._master, keys)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._reader.join(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        os.close(self._master)
