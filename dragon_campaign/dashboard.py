"""The run's report served live on 127.0.0.1 while the campaign runs (``run_campaign.py --dashboard PORT``).

From a laptop, through the login node: ``ssh -L 8050:<compute node>:8050 polaris`` (or ``-L 8050:localhost:8050``
when the campaign runs where you log in), then open http://localhost:8050. The page is the same as
``report.html`` (``dragon_campaign.report``), rebuilt from the run directory at most every ``REBUILD_S``
seconds and reloading itself every ``refresh_s``; Plotly's JavaScript is served once, for the browser to
cache. Only loopback is bound: nothing is exposed beyond the node.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from dragon_campaign.report import render

logger = logging.getLogger(__name__)

REBUILD_S = 2.0
PLOTLY_PATH = "/plotly.min.js"


class Dashboard:
    """Serves the live report between ``__enter__`` and ``__exit__``; a port in use is logged, not fatal."""

    def __init__(self, run_dir: Path, port: int, refresh_s: float = 10.0) -> None:
        self.run_dir = run_dir
        self.port = port
        self.refresh_s = refresh_s
        self._server: ThreadingHTTPServer | None = None
        self._page: tuple[float, bytes] = (0.0, b"")
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """Where the dashboard answers."""
        return f"http://127.0.0.1:{self.port}/"

    def page(self) -> bytes:
        """The live page, rebuilt at most every ``REBUILD_S`` seconds."""
        with self._lock:
            built, page = self._page
            if time.monotonic() - built > REBUILD_S:
                page = render(self.run_dir, live_refresh_s=self.refresh_s, plotly_src=PLOTLY_PATH).encode()
                self._page = (time.monotonic(), page)
            return page

    def __enter__(self) -> Dashboard:
        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        except OSError as exc:
            logger.error(f"Could not serve the dashboard on 127.0.0.1:{self.port} ({exc.strerror}); the campaign goes on without it")
            return self
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="dashboard", daemon=True).start()
        logger.info(f"Dashboard: {self.url} (from elsewhere: ssh -L {self.port}:<this node>:{self.port} <login node>)")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _handler(dashboard: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            if self.path == PLOTLY_PATH:
                from plotly.offline import get_plotlyjs

                self._send(get_plotlyjs().encode(), "application/javascript", cache="max-age=86400")
            elif self.path in ("/", "/index.html", "/report.html"):
                try:
                    self._send(dashboard.page(), "text/html; charset=utf-8", cache="no-store")
                except Exception as exc:  # a half-written results line, say: say so, keep serving
                    logger.debug("Could not build the live report", exc_info=True)
                    self._send(f"The report could not be built yet: {exc!r}; reload in a moment.".encode(), "text/plain", status=503)
            else:
                self._send(b"Not found", "text/plain", status=404)

        def _send(self, body: bytes, kind: str, cache: str = "no-store", status: int = 200) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", cache)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
            logger.debug(f"dashboard: {format % args}")

    return Handler
