"""A loopback stand-in for the Docker API socket: relays every byte to the real engine, and injects the
faults of an engine restart and of a full disk where a test says so.

- `outage()`: the engine goes away: every open connection (attached execs, streams) is cut, new ones are
  refused, and the containers of the given owner are killed (an engine restart kills them, too); `back()`
  ends it.
- `fail_commits(message)`: `POST /commit` answers 500 with `message` (the engine's disk full when an image
  layer is committed) without reaching the engine.
- `on_request(predicate, action)`: run `action` once, before relaying the first request whose request line
  matches (the outage at a precise point of a run, not after a guessed time).

Requests are seen at the start of each one (HTTP/1.1 without pipelining, as docker-py speaks it); after an
upgrade (attach, exec start) the connection carries a raw stream and is relayed untouched.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    for s in (source, target):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


class EngineProxy:
    def __init__(self, path: Path, engine: str | None = None):
        host = engine or os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        self.engine = host.removeprefix("unix://")
        self.path = Path(path)
        self.url = f"unix://{self.path}"
        self.down = threading.Event()
        self.commit_failure: str | None = None
        self.requests: list[str] = []
        self._hooks: list[tuple[Callable[[str], bool], Callable[[], None]]] = []
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(64)
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> EngineProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._listener.close()
        self._cut_all()
        self.path.unlink(missing_ok=True)

    # -- faults ----------------------------------------------------------------------------------

    def outage(self, kill: Callable[[], None] | None = None) -> None:
        self.down.set()
        self._cut_all()
        if kill is not None:
            kill()

    def back(self) -> None:
        self.down.clear()

    def fail_commits(self, message: str | None) -> None:
        self.commit_failure = message

    def on_request(self, predicate: Callable[[str], bool], action: Callable[[], None]) -> None:
        with self._lock:
            self._hooks.append((predicate, action))

    # -- relay -----------------------------------------------------------------------------------

    def _cut_all(self) -> None:
        with self._lock:
            doomed, self._open = self._open, set()
        for s in doomed:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()  # as a socket with no engine behind it: the connection ends at once
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._open.update(sockets)

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._track(client, upstream)
        try:
            upstream.connect(self.engine)
            threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
            buffered = b""
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buffered += data
                while b"\r\n\r\n" in buffered:  # a whole request head: look at it
                    head, _, rest = buffered.partition(b"\r\n\r\n")
                    line = head.split(b"\r\n", 1)[0].decode("latin-1")
                    length = _content_length(head)
                    while len(rest) < length:
                        more = client.recv(65536)
                        if not more:
                            return
                        rest += more
                    body, buffered = rest[:length], rest[length:]
                    self.requests.append(line)
                    self._run_hooks(line)
                    if self.down.is_set():
                        return
                    if self.commit_failure is not None and line.startswith("POST ") and "/commit?" in line:
                        client.sendall(_error_response(500, self.commit_failure))
                        continue
                    upstream.sendall(head + b"\r\n\r\n" + body)
                    if b"upgrade" in head.lower():  # attach / exec start: a raw stream from here on
                        if buffered:
                            upstream.sendall(buffered)
                        _pipe(client, upstream)
                        return
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.close()

    def _run_hooks(self, line: str) -> None:
        with self._lock:
            due = [hook for hook in self._hooks if hook[0](line)]
            self._hooks = [hook for hook in self._hooks if hook not in due]
        for _, action in due:
            action()


def _content_length(head: bytes) -> int:
    for header in head.split(b"\r\n")[1:]:
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip() or 0)
    return 0


def _error_response(status: int, message: str) -> bytes:
    import json

    body = json.dumps({"message": message}).encode()
    return (f"HTTP/1.1 {status} Internal Server Error\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body
