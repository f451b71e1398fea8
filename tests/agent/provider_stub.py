"""Loopback stand-ins for an OpenAI-compatible chat API and the Anthropic Messages API.

A `ProviderStub` is a real HTTP server on 127.0.0.1 (a thread), answering each request with the next
scripted `Answer` and keeping every request it received (path, headers, JSON body). litellm talks to it
exactly as to the real provider: `openai/<model>` with `api_base=stub.url + "/v1"`, `anthropic/<model>`
with `ANTHROPIC_API_BASE=stub.url`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    status: int = 200
    body: dict[str, Any] | str = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None  # answer only once this is set (a provider that stops responding)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def openai_reply(text: str = "OK", *, model: str = "gpt-5.4-mini", prompt_tokens: int = 12,
                 completion_tokens: int = 3, cached_tokens: int = 0) -> Answer:
    usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}
    if cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return Answer(body={"id": "chatcmpl-stub", "object": "chat.completion", "created": 1_700_000_000,
                        "model": model, "usage": usage,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}]})


def anthropic_reply(text: str = "OK", *, model: str = "claude-sonnet-5-5", input_tokens: int = 12,
                    output_tokens: int = 3, cache_read: int = 0, cache_write: int = 0) -> Answer:
    return Answer(body={"id": "msg_stub", "type": "message", "role": "assistant", "model": model,
                        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                        "stop_sequence": None,
                        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                                  "cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_write}})


def openai_error(status: int, message: str, *, code: str | None = None, type_: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, {"error": {"message": message, "type": type_, "param": None, "code": code}},
                  headers or {})


def anthropic_error(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, {"type": "error", "error": {"type": type_, "message": message}}, headers or {})


class ProviderStub:
    def __init__(self, answers: list[Answer] | None = None) -> None:
        self.answers: list[Answer] = []
        self._holds: list[threading.Event] = []
        self.received: list[Received] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"_raw": raw.decode(errors="replace")}
                with stub._lock:
                    stub.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    answer = stub.answers.pop(0) if stub.answers else Answer(
                        500, {"error": {"message": "the stub has no answer left", "type": "server_error"}})
                if answer.hold is not None:
                    answer.hold.wait(60)
                payload = answer.body if isinstance(answer.body, str) else json.dumps(answer.body)
                data = payload.encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for key, value in answer.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a read timeout): nothing to answer to

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.add(*(answers or []))

    def __enter__(self) -> ProviderStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for hold in self._holds:
            hold.set()  # a held request is answered now, so the server can stop
        self.server.shutdown()
        self.server.server_close()

    def add(self, *answers: Answer) -> None:
        with self._lock:
            self.answers.extend(answers)
            self._holds.extend(a.hold for a in answers if a.hold is not None)
