"""``crosstime serve RUN``: the run's dashboard over HTTP, on this machine only.

A small report is one file that opens from disk. A large one (more than
``dashboard.EMBED_MAX_FEATURES`` features) keeps its features beside it in ``report/features/``
and loads them as the reader opens them; that also works from ``file://``, but some browsers
(or their settings) refuse scripts from files. ``serve`` gives ``RUN/report/`` to the standard
library's HTTP server, bound to 127.0.0.1 (nothing outside the machine can reach it), read only.

Two guards: a request whose path resolves outside ``report/`` (a symbolic link to ``/etc/passwd``
or to ``..`` placed in the folder) is answered 404, never served or listed; and a request whose
``Host`` header is not this machine (``localhost``, ``127.0.0.1``, ``[::1]`` or the bound host, with
or without the server's port) is answered 403, so a web page whose name was re-pointed at
127.0.0.1 (DNS rebinding) cannot read the report.
"""

from __future__ import annotations

import functools
import http.server
from http import HTTPStatus
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from crosstime.artifacts import REPORT_HTML, RunDir
from crosstime.errors import CrosstimeError

HOST = "127.0.0.1"
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", HOST})  # what a Host header may name


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

    def send_head(self):
        """The base class's answer, for a request from this machine's name for a path inside the folder."""
        if not host_allowed(self.headers.get("Host"), self.server.server_port):
            self.send_error(HTTPStatus.FORBIDDEN, "this server answers only requests for localhost or 127.0.0.1")
            return None
        root = Path(self.directory).resolve()
        target = Path(self.translate_path(self.path)).resolve()
        if target != root and root not in target.parents:  # a symbolic link leading out of report/
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        return super().send_head()


def host_allowed(host: str | None, port: int) -> bool:
    """Whether a request's ``Host`` header names this machine: one of :data:`LOCAL_NAMES`, with no port
    or ``port`` (a missing header is refused: every browser sends one)."""
    if not host:
        return False
    name, colon, given = host.strip().lower().rpartition(":")
    if not colon or name.endswith(":") or (host.startswith("[") and not name.endswith("]")):
        name, given = host.strip().lower(), None  # no port (an IPv6 address's own colons are inside [ ])
    return name in LOCAL_NAMES and given in (None, str(port))


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


__all__ = ["HOST", "LOCAL_NAMES", "ServeConfig", "ServeError", "host_allowed", "make_server", "serve"]
