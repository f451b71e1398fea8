"""Runs INSIDE a sandbox (stdlib only, Python >= 3.6): executes commands sent over stdin.

One long-lived process per sandbox saves a `docker exec` round trip (~60 ms) per command. Protocol:
each request and response is `<10-digit length>\n<json>` on stdin / stdout.
A request: {"command", "env", "workdir", "timeout", "cap", "kill_strays"}. The response carries the
exit code, capped output (head and tail, base64), the total byte count and whether it timed out.
"""

import base64
import json
import os
import select
import signal
import subprocess
import sys
import time

ME = os.getpid()


def _stat(pid):
    """(state, session id) of a process, or None when it is gone."""
    try:
        with open("/proc/{}/stat".format(pid)) as f:  # noqa: UP032 - runs on Python >= 3.6 in images
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def kill_others():
    """SIGKILL every live process outside init's session except this server.

    Commands run in sessions of their own, so this reaches them and whatever they spawned, also
    children that called setsid; init (and the `sleep` it waits on) share init's session and stay.
    """
    init = _stat(1)
    init_session = init[1] if init else -1
    for _ in range(50):
        alive = 0
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in (1, ME):
                continue
            stat = _stat(int(name))
            if stat is None or stat[0] == "Z" or stat[1] == init_session:
                continue
            try:
                os.kill(int(name), signal.SIGKILL)
                alive += 1
            except (ProcessLookupError, PermissionError):
                pass
        reap()
        if not alive:
            return
        time.sleep(0.005)


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run(req):
    if req.get("kill_strays"):
        kill_others()
    env = dict(os.environ)
    env.update(req.get("env") or {})
    cap = max(int(req.get("cap", 65536)) // 2, 1)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(["bash", "-c", req["command"]], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, cwd=req.get("workdir") or None, env=env,
                                start_new_session=True)
    except OSError as exc:
        return {"exit_code": 127, "head": "", "tail": base64.b64encode(str(exc).encode()).decode(), "total": 0,
                "timed_out": False, "duration": 0.0}
    head, tail, total = bytearray(), bytearray(), 0
    deadline = started + float(req.get("timeout", 60))
    timed_out = False
    fd = proc.stdout.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        total += len(chunk)
        room = cap - len(head)
        if room > 0:
            head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            tail += chunk
            if len(tail) > 2 * cap:
                del tail[: len(tail) - cap]
    if timed_out:
        kill_others()
    else:
        # Output closed: the command ended (or only its background children hold nothing open).
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_others()
    proc.stdout.close()
    code = proc.wait()
    reap()
    tail = bytes(tail[-cap:]) if len(tail) > cap else bytes(tail)
    return {"exit_code": 128 - code if code < 0 else code, "head": base64.b64encode(bytes(head)).decode(),
            "tail": base64.b64encode(tail).decode(), "total": total, "timed_out": timed_out,
            "duration": time.monotonic() - started}


def read_exact(stream, size):
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def main():
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(b"0000000002\n{}")  # ready
    stdout.flush()
    while True:
        header = read_exact(stdin, 11)
        if header is None:
            return
        req = json.loads(read_exact(stdin, int(header[:10])))
        body = json.dumps(run(req)).encode()
        stdout.write(b"%010d\n" % len(body) + body)
        stdout.flush()


if __name__ == "__main__":
    main()
