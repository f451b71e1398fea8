"""Runs INSIDE a sandbox (stdlib only, Python >= 3.6): executes commands sent over stdin.

One long-lived process per sandbox saves a `docker exec` round trip (~60 ms) per command. Protocol:
each request and response is `<10-digit length>\n<json>` on stdin / stdout.
A request: {"command", "env", "workdir", "timeout", "cap", "kill_strays"}; timeout None means no limit.
The response carries the exit code, capped output (head and tail, base64), the total byte count and
whether it timed out. A command that cannot start (a NUL byte, a missing workdir) gets exit code 127
and a one-line reason as its output; the server itself keeps serving.
"""

import base64
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time

ME = os.getpid()
# Linux refuses a single argument over 128 KiB (MAX_ARG_STRLEN); longer commands run from a file.
ARG_LIMIT = 64 * 1024
# After the command's main process exits, output is kept until it pauses this long (at most DRAIN_MAX_S).
DRAIN_S = 0.2
DRAIN_MAX_S = 1.0
POLL_S = 0.05


def _stat(pid):
    """(state, session id) of a process, or None when it is gone."""
    try:
        with open("/proc/{}/stat".format(pid)) as f:  # noqa: UP032 - runs on Python >= 3.6 in images
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def kill_others(reaped):
    """SIGKILL every live process outside init's session except this server.

    Commands run in sessions of their own, so this reaches them and whatever they spawned, also
    children that called setsid; init (and the `sleep` it waits on) share init's session and stay.
    One kill(-1) first: the kernel signals every process in one pass that a fork bomb cannot outrun
    (a pass over /proc can, and it starves under the bomb); the loop below catches stragglers.
    """
    try:
        os.kill(-1, signal.SIGKILL)  # never init, never this process
    except OSError:
        pass
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
        reap(reaped)
        if not alive:
            return
        time.sleep(0.005)


def kill_session(sid):
    """SIGKILL what is left of one command: the processes of its session (those that called setsid escape)."""
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != ME:
            stat = _stat(int(name))
            if stat is not None and stat[1] == sid and stat[0] != "Z":
                try:
                    os.kill(int(name), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def reap(reaped):
    """Collect exited children into `reaped` (pid -> wait status). The command's own status must be kept:
    once reaped here, Popen.wait() would find no child and report exit code 0 for a killed command."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        reaped[pid] = status


def exit_code(proc, reaped):
    """The command's exit code, 128+N when signal N killed it."""
    status = reaped.pop(proc.pid, None)
    if status is not None:
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    else:
        code = proc.wait()
    return 128 - code if code < 0 else code


def failed(message, started):
    text = base64.b64encode(message.encode("utf-8", "replace")).decode()
    return {"exit_code": 127, "head": text, "tail": "", "total": 0, "timed_out": False,
            "duration": time.monotonic() - started}


def start(req):
    """The command's process and, for a long command, the file it runs from (the caller removes it)."""
    command = req["command"]
    if "\0" in command:
        raise ValueError("the command contains a NUL byte")
    env = dict(os.environ)
    env.update(req.get("env") or {})
    argv, script = ["bash", "-c", command], None
    if len(command.encode("utf-8", "surrogateescape")) > ARG_LIMIT:
        fd, script = tempfile.mkstemp(prefix=".ps_cmd_", suffix=".sh")
        with os.fdopen(fd, "wb") as f:
            f.write(command.encode("utf-8", "surrogateescape"))
        argv = ["bash", script]
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                cwd=req.get("workdir") or None, env=env, start_new_session=True), script
    except BaseException:
        if script:
            os.unlink(script)
        raise


def run(req):
    reaped = {}
    if req.get("kill_strays"):
        kill_others(reaped)
    cap = max(int(req.get("cap", 65536)) // 2, 1)
    started = time.monotonic()
    try:
        proc, script = start(req)
    except (OSError, ValueError) as exc:
        return failed("cannot start the command: {}".format(exc), started)  # noqa: UP032 - Python >= 3.6
    head, tail, total = bytearray(), bytearray(), 0
    timeout = req.get("timeout")
    deadline = None if timeout is None else started + float(timeout)
    timed_out = held_open = False
    exited_at = last_data = None  # set once the main process ended while the output is still open
    fd = proc.stdout.fileno()
    while True:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            timed_out = True
            break
        if exited_at is None and proc.poll() is not None:
            exited_at = last_data = now
        if exited_at is not None and (now - last_data >= DRAIN_S or now - exited_at >= DRAIN_MAX_S):
            held_open = True  # a background child keeps the pipe: the command itself is done
            break
        wait = POLL_S if deadline is None else min(deadline - now, POLL_S)
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        if exited_at is not None:
            last_data = time.monotonic()  # still talking: keep draining
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
        kill_others(reaped)
    elif held_open:
        kill_session(proc.pid)  # start_new_session: the command's session id is its pid
    else:
        # Output closed: the command ended (or only its background children hold nothing open).
        try:
            proc.wait(timeout=None if deadline is None else max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_others(reaped)
    proc.stdout.close()
    code = exit_code(proc, reaped)
    if timed_out and code == 0:
        code = 128 + signal.SIGKILL  # what it was killed with; a timeout never reads as success
    reap({})
    if script:
        try:
            os.unlink(script)
        except OSError:
            pass
    tail = bytes(tail[-cap:]) if len(tail) > cap else bytes(tail)
    return {"exit_code": code, "head": base64.b64encode(bytes(head)).decode(),
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
