"""``crosstime serve RUN``: the run's dashboard over HTTP, on this machine only.

A small report is one file that opens from disk. A large one (more than
``dashboard.EMBED_MAX_FEATURES`` features) keeps its features beside it in ``report/features/``
and loads them as the reader opens them; that also works from ``file://``, but some browsers
(or their settings) refuse scripts from files. ``serve`` gives ``RUN/report/`` to the standard
library's HTTP server, bound to 127.0.0.1 (nothing outside the machine can reach it), read only.
"""

from __future__ import annotations

import functools
import http.server
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from crosstime.artifacts import REPORT_HTML, RunDir
from crosstime.errors import CrosstimeError

HOST = "127.0.0.1"


class ServeConfig(BaseModel):
    """The settings of :func:`serve` (``crosstime serve``)."""

    model_config = ConfigDict(extra="forbid")

    run: Path = Field(description="Run directory with a report (crosstime report RUN).")
    port: int = Field(8000, ge=0, le=65535, description="Port on 127.0.0.1 (0: any free one).")


class ServeError(CrosstimeError):
    """The dashboard cannot be served as asked (no report yet, the port is taken)."""


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Files of the report folder (GET and HEAD only, as the base class); one log line per request off."""

    def log_message(self, format: str, *args) -> None:  # the reader's terminal shows the URL, not every shard
        return


def make_server(run: str | Path, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """An HTTP server for ``RUN/report/`` on 127.0.0.1:``port`` (0: any free port), not yet serving."""
    folder = RunDir(Path(run)).report
    if not (folder / REPORT_HTML).is_file():
        raise ServeError(f"{folder / REPORT_HTML} does not exist; make the dashboard first: `crosstime report {run}`")
    handler = functools.partial(_Handler, directory=str(folder))
    try:
        return http.server.ThreadingHTTPServer((HOST, port), handler)
    except OSError as err:
        raise ServeError(f"cannot listen on {HOST}:{port} ({err.strerror}); choose another --port") from err


def serve(run: str | Path, port: int = 8000) -> None:
    """Serve ``RUN/report/`` until interrupted (see the module docstring)."""
    with make_server(run, port) as server:
        print(f"serving {RunDir(Path(run)).report} at http://{HOST}:{server.server_port}/ (Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped")


__all__ = ["HOST", "ServeConfig", "ServeError", "make_server", "serve"]
