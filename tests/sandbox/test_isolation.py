from __future__ import annotations

from sandbox.manager import Limits


def test_no_network_by_default(sandbox):
    probe = "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=3)\n    print('connected')\nexcept OSError as e:\n    print('refused', e)\n"
    result = sandbox.run("python3 probe.py", files={"probe.py": probe})
    assert result.output.startswith("refused")


def test_runs_as_non_root_without_capabilities(sandbox):
    assert sandbox.exec("id -u").output.strip() != "0"
    caps = sandbox.exec("grep CapEff /proc/self/status").output.split()[1]
    assert int(caps, 16) == 0
    assert sandbox.exec("grep NoNewPrivs /proc/self/status").output.split()[1] == "1"


def test_fork_bomb_is_stopped_by_pids_limit(manager, calc_image):
    small = manager.create(calc_image, limits=Limits(pids=64))
    bomb = (
        "import os, time\nkids = 0\ntry:\n    for _ in range(500):\n        if os.fork() == 0:\n"
        "            time.sleep(30); os._exit(0)\n        kids += 1\nexcept OSError as e:\n    print('stopped', kids, e.errno)\n"
    )
    result = small.run("python3 bomb.py", files={"bomb.py": bomb}, timeout=60)
    assert result.output.startswith("stopped")
    assert int(result.output.split()[1]) < 64
    small.reset()  # kills the sleeping children
    assert small.exec("echo responsive").output.strip() == "responsive"


def test_network_can_be_enabled_per_sandbox(manager, calc_image):
    online = manager.create(calc_image, network=True)
    assert online.exec("cat /sys/class/net/eth0/operstate 2>/dev/null || echo none").output.strip() != "none"
