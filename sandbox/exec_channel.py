"""Host side of the in-sandbox exec server: one attached `docker exec` that runs many commands.

A warm sandbox then pays a pipe round trip per command instead of a `docker exec` (create, start,
inspect). When the server cannot run (no python3 in the image, or it died), callers fall back to a
plain `docker exec` per command.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import struct
import time
from pathlib import Path

from docker import APIClient

from sandbox.execution import ExecResult, join_head_tail, one_file_tar

SERVER_PATH = "/tmp/.patchswarm/exec_server.py"
_SERVER_SOURCE = (Path(__file__).parent / "exec_server_script.py").read_bytes()


class ChannelBroken(Exception):
    """The server stopped answering; the caller falls back and may restart it."""


class ExecChannel:
    """Length-prefixed JSON requests over the attached stdin/stdout of the server process."""

    def __init__(self, api: APIClient, container_id: str, user: str):
        self.api, self.container_id, self.user = api, container_id, user
        # Into /tmp, not "/": with a disk quota the root is read-only and only /tmp (a volume) takes files.
        api.put_archive(container_id, "/tmp", one_file_tar(SERVER_PATH.removeprefix("/tmp/"), _SERVER_SOURCE,
                                                           mode=0o755))
        exec_id = api.exec_create(container_id, ["python3", "-u", SERVER_PATH], stdin=True, stdout=True,
                                  stderr=True, user=user)["Id"]
        self.exec_id = exec_id
        sock = api.exec_start(exec_id, socket=True)
        self._sock: socket.socket = getattr(sock, "_sock", sock)
        self._sock.setblocking(True)
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._read_message(deadline=time.monotonic() + 30)  # the server says it is ready

    def _read_frames(self, deadline: float | None) -> None:
        """Read one multiplexed frame (8-byte header: stream, 0, 0, 0, size) into stdout/stderr buffers."""
        header = self._recv_exact(8, deadline)
        stream, size = header[0], struct.unpack(">I", header[4:])[0]
        payload = self._recv_exact(size, deadline)
        (self._stdout if stream == 1 else self._stderr).extend(payload)

    def _recv_exact(self, size: int, deadline: float | None) -> bytes:
        data = bytearray()
        while len(data) < size:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ChannelBroken("exec server did not answer in time")
            ready, _, _ = select.select([self._sock], [], [], left)
            if not ready:
                continue
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                raise ChannelBroken("exec server closed its output: " + self._stderr.decode(errors="replace")[-300:])
            data.extend(chunk)
        return bytes(data)

    def _read_message(self, deadline: float | None) -> dict:
        while len(self._stdout) < 11:
            self._read_frames(deadline)
        size = int(self._stdout[:10])
        while len(self._stdout) < 11 + size:
            self._read_frames(deadline)
        body = bytes(self._stdout[11 : 11 + size])
        del self._stdout[: 11 + size]
        return json.loads(body)

    def run(self, command: str, *, timeout: float | None, env: dict[str, str] | None, workdir: str | None,
            output_cap: int, kill_strays: bool = False) -> ExecResult:
        """Run one command; `timeout` None means no limit. Commands of any length work (long ones run from a file)."""
        request = json.dumps({"command": command, "env": env or {}, "workdir": workdir, "timeout": timeout,
                              "cap": output_cap, "kill_strays": kill_strays}).encode()
        try:
            self._sock.sendall(b"%010d\n" % len(request) + request)
            # The server enforces `timeout` itself; the extra margin covers killing the process tree.
            reply = self._read_message(deadline=None if timeout is None else time.monotonic() + timeout + 30)
        except OSError as exc:
            raise ChannelBroken(f"exec server connection failed: {exc}") from None
        head = base64.b64decode(reply["head"])
        tail = base64.b64decode(reply["tail"])
        output, cut = join_head_tail(head, tail, reply["total"])
        return ExecResult(command=command, exit_code=reply["exit_code"], output=output,
                          timed_out=reply["timed_out"], duration_s=reply["duration"],
                          output_bytes=reply["total"], truncated_bytes=cut)

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
