"""The import-layering check passes on the tree and names each import against the one-way layering."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts" / "check_layers.py"


def check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), str(root)], capture_output=True, text=True)


def test_the_tree_follows_the_layering():
    result = check(ROOT)
    assert result.returncode == 0, result.stdout
    assert "layering: ok" in result.stdout


def test_upward_imports_are_caught_wherever_they_hide(tmp_path):
    for package in ("sandbox", "agent", "selection", "patchswarm"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    # a lazy import inside a function, a TYPE_CHECKING import, and a relative import climbing out
    (tmp_path / "sandbox" / "leak.py").write_text("def f():\n    from agent.model import ModelClient\n")
    (tmp_path / "agent" / "leak.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import selection.models\n")
    (tmp_path / "selection" / "sub").mkdir()
    (tmp_path / "selection" / "sub" / "__init__.py").write_text("")
    (tmp_path / "selection" / "sub" / "leak.py").write_text("from ... import patchswarm\nfrom .. import voting\n")
    (tmp_path / "patchswarm" / "fine.py").write_text("import sandbox, agent, selection\n")

    result = check(tmp_path)

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "sandbox/leak.py:2: sandbox imports agent.model (sandbox may import nothing of ours)" in lines
    assert "agent/leak.py:3: agent imports selection.models (agent may import sandbox)" in lines
    assert any(line.startswith("selection/sub/leak.py:1: selection imports patchswarm") for line in lines)
    assert not any("voting" in line or "fine.py" in line for line in lines)
    assert lines[-1].startswith("layering: 3 import(s)")


def test_litellm_is_imported_by_its_boundary_module_alone(tmp_path):
    for package in ("sandbox", "agent", "selection", "patchswarm"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "bench.py").write_text("import litellm\n")
    (tmp_path / "patchswarm" / "leak.py").write_text("def f():\n    from litellm.types.utils import Usage\n")

    result = check(tmp_path)

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "scripts/bench.py:1: imports litellm (only agent/llm.py may: use it instead)" in lines
    assert "patchswarm/leak.py:2: imports litellm.types.utils (only agent/llm.py may: use it instead)" in lines
    assert lines[-1].startswith("layering: 2 import(s)")
