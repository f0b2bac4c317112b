"""A chat-completions server on 127.0.0.1 for the LLM tests: scripted replies, failures and hangs,
with every request counted (the LLM tests' one server; test_llm_server.py uses it)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from crosstime.interpret.contracts import Context, FeatureEvidence

# {"text": ..., "usage": (p, c)} | {"status": 429, "headers": {...}} | {"raw": "body"} | {"hang": s, ...}
Action = dict[str, Any]


def last_user(body: dict[str, Any]) -> str:
    return [m["content"] for m in body["messages"] if m["role"] == "user"][-1]


def marked_word(body: dict[str, Any]) -> str:
    """The first highlighted word of the request's own examples (not the few-shot ones)."""
    return re.search(r"<<(.*?)>>", last_user(body)).group(1).strip()


def explain_reply(n: int, body: dict[str, Any]) -> Action:
    """A well-formed explainer reply naming the highlighted word (complexity 2)."""
    return {"text": f"Step 1 ...\n[EXPLANATION]: the word {marked_word(body)}\n[COMPLEXITY]: 2"}


class ScriptedServer:
    """``respond(n, body)`` (n: the request's number from 0) decides each reply. ``bodies``: every
    request received; ``max_in_flight``: the most requests it was answering at once."""

    def __init__(self, respond: Callable[[int, dict[str, Any]], Action]):
        self.respond = respond
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends every hang (at teardown)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        with self.lock:
            n = len(self.bodies)
            self.bodies.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            action = self.respond(n, body)
            if "hang" in action:
                self.release.wait(action["hang"])
            if "raw" in action:  # a body cut short or garbled by a proxy
                data = action["raw"].encode()
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)
            elif "status" in action:
                payload = {"error": {"message": action.get("message", "scripted failure"), "type": "test", "code": None}}
                self._send(handler, action["status"], payload, action.get("headers", {}))
            else:
                prompt, completion = action.get("usage", (100, 10))
                self._send(handler, 200, {
                    "id": f"cmpl-{n}", "object": "chat.completion", "created": 0, "model": body["model"] + "-served",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": action["text"]}}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}, {})
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): nothing to answer
            pass
        finally:
            with self.lock:
                self.in_flight -= 1

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    server._send(self, 404, {"error": {"message": f"no route {self.path}"}}, {})
                    return
                server._answer(self)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        return Handler


def evidence(feature: int, word: str, checkpoint: str | None = None) -> FeatureEvidence:
    """A feature that fires on ``word`` in three contexts (activation 4, 6, 8)."""
    top = tuple(Context(tokens=("The", f" {word}", " sat", " here"), activations=(0.0, act, 0.5, 0.0), marked=1)
                for act in (8.0, 6.0, 4.0))
    return FeatureEvidence(feature=feature, checkpoint=checkpoint, top=top, weaker=(), inactive=())
