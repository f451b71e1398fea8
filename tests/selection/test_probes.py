"""Issue probes and hygiene read from text alone, and the confidence of a ranked choice."""

from __future__ import annotations

import os
import subprocess
import sys

from selection.hygiene import static_hygiene
from selection.models import Outcome
from selection.probes import (
    Probe,
    ProbeStep,
    expected_by_issue,
    extract_probes,
    normalize_output,
    parse_probe_output,
    prelude_imports,
    raises,
    runner_script,
)
from selection.scoring import EvidenceKinds, PatchEvidence, confidence
from selection.shell_probes import reaches_shown_output

ISSUE = """Wrong kind\r\n\r\n```\r\nfrom pkg import A\r\na = A(2)\r\na.kind\r\n# Right\r\n```\r\n
This one is wrong:
```
b = A(3)
b.kind
# Wrong
```

>>> A(1).size()
Traceback (most recent call last):
  File "<stdin>", line 1, in <module>
ValueError: bad size

I also ran it without a fence:

x = A(4)

x.size()

It should raise ValueError('negative sizes are not allowed').
"""


def test_probes_come_from_fences_doctests_and_unfenced_code():
    probes = extract_probes(ISSUE)
    steps = [(p.kind, s.code, s.shown) for p in probes for s in p.steps]
    assert steps[0] == ("script", "from pkg import A\na = A(2)\na.kind", "Right")
    assert steps[1] == ("script", "b = A(3)\nb.kind", "Wrong")
    assert ("doctest", "A(1).size()", steps[2][2]) == steps[2] and "ValueError: bad size" in steps[2][2]
    assert ("script", "x = A(4)\n\nx.size()", None) in steps
    # Frames of library code in a traceback are not probes.
    assert not any("<stdin>" in code for _, code, _ in steps)


def test_a_result_the_issue_names_is_expected():
    assert expected_by_issue("!raises ValueError: negative sizes are not allowed", ISSUE)
    assert not expected_by_issue("!raises TypeError: unsupported", ISSUE)
    assert expected_by_issue("Right", ISSUE) and not expected_by_issue("Elsewhere", ISSUE)


def test_hygiene_sees_only_tests_debug_prints_and_scratch_files():
    only_tests = "--- a/tests/test_x.py\n+++ b/tests/test_x.py\n@@ -1 +1 @@\n-a\n+b\n"
    assert static_hygiene(only_tests).fatal == "edits only tests"
    noisy = ("--- a/pkg/m.py\n+++ b/pkg/m.py\n@@ -1 +1,2 @@\n x = 1\n+print('debug', x)\n"
             "--- /dev/null\n+++ b/reproduce.py\n@@ -0,0 +1 @@\n+import pkg\n")
    found = static_hygiene(noisy)
    assert found.fatal is None and len(found.penalties) == 2


def test_confidence_abstains_only_against_a_candidate_that_behaves_differently():
    kinds = EvidenceKinds()
    fix = PatchEvidence(key="a", id="a", regressions=0, probe_fixes=1, changed_behaviour=True, behaviour_support=3,
                        behaviour="B1")
    twin = fix.model_copy(update={"key": "b", "id": "b"})
    other = fix.model_copy(update={"key": "c", "id": "c", "behaviour": "B2"})
    assert confidence([fix, twin], kinds).level == "medium"  # indistinguishable: nothing to choose
    assert confidence([fix, twin, other], kinds).level == "none"  # tied with another behaviour: abstain
    worse = other.model_copy(update={"probe_fixes": 0, "behaviour_support": 1, "changed_behaviour": False})
    assert confidence([fix, worse], kinds).level == "high"
    noisy = fix.model_copy(update={"penalties": 1})  # adds a scratch file: never high
    assert confidence([noisy, worse], kinds).level == "medium"
    broken = fix.model_copy(update={"regressions": 2})
    assert confidence([broken, worse], kinds).level == "none"


CLI_ISSUE = """Traceback printed for unrecognized option

### Command used

```shell
pylint -Q
```

### Pylint output

```shell
************* Module Command line
Command line:1:0: E0015: Unrecognized option found: Q (unrecognized-option)
Traceback (most recent call last):
  File "/venv/bin/pylint", line 33, in <module>
pylint.config.exceptions._UnrecognizedOptionError
```

```
(venv) $ pip install -e .
$ tool --check a.py
a.py: crashed
```

```shell
pylint 2.14.0-dev0
astroid 2.11.3
```

```python
# content of test_foo.py
def test_it():
    assert 0
```

```
$ python --version
$ pytest -rsx test_foo.py
```

```
>>>convert_to(joule*second,joule)
    joule**(7/9)
```
"""


def test_shell_blocks_become_command_probes_and_prompts_need_no_space():
    probes = extract_probes(CLI_ISSUE)
    steps = [(p.kind, s.code, s.shown) for p in probes for s in p.steps]
    # The command runs; the block of output, `pip install` and a version listing do not.
    assert steps == [("shell", "pylint -Q", None), ("shell", "tool --check a.py", "a.py: crashed"),
                     ("script", "# content of test_foo.py\ndef test_it():\n    assert 0", None),
                     ("shell", "pytest -rsx test_foo.py", None),
                     ("doctest", "convert_to(joule*second,joule)", "joule**(7/9)")]
    # The command that names the test file runs with the block that the file's comment names.
    assert probes[3].steps[0].files == {"test_foo.py": "# content of test_foo.py\ndef test_it():\n    assert 0\n"}


def test_the_prelude_imports_every_package_on_the_way_to_a_touched_module(tmp_path):
    for folder in ("pkg", "pkg/units", "pkg/units/tests"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "pkg/units/util.py").write_text("")
    (tmp_path / "setup.py").write_text("raise SystemExit('setup() must not run')")
    touched = ["pkg/units/util.py", "pkg/units/tests/test_util.py", "setup.py", "docs/conf.py"]
    assert prelude_imports(tmp_path, touched) == [
        "from pkg.units.util import *", "from pkg.units import *", "from pkg import *"]


def _run_runner(tmp_path, probes, crash: bool) -> dict[str, list[str]]:
    """The probe runner as the sandbox runs it, in a real interpreter, with a `tool` command on PATH that
    prints the file it is given, then crashes (the bug) or exits 2 (the fix)."""
    bin_dir = tmp_path / ("bin-crash" if crash else "bin-fixed")
    bin_dir.mkdir()
    body = "raise SystemExit(2)" if not crash else "raise KeyError('Q')"
    (bin_dir / "tool").write_text(f"#!{sys.executable}\nimport os, sys\nprint(open(sys.argv[1]).read() if "
                                  f"os.path.isfile(sys.argv[-1]) else 'checking')\n{body}\n")
    (bin_dir / "tool").chmod(0o755)
    script = tmp_path / "runner.py"
    script.write_text(runner_script(probes, step_timeout=2))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120,
                          cwd=tmp_path)
    parsed = parse_probe_output(Outcome(exit_code=done.returncode, output=done.stdout))
    assert parsed is not None, done.stderr
    return parsed


def test_a_command_that_prints_a_traceback_raises_and_a_hanging_one_is_killed_with_its_children(tmp_path):
    probes = [Probe(id="p1", kind="shell", steps=[
        ProbeStep(code="tool -Q"), ProbeStep(code="absent-tool x"), ProbeStep(code="sh -c 'sleep 60 & sleep 60'"),
        ProbeStep(code="tool test_foo.py", files={"test_foo.py": "the issue's test"})])]
    before, after = _run_runner(tmp_path, probes, crash=True)["p1"], _run_runner(tmp_path, probes, crash=False)["p1"]
    assert raises(before[0]) and "KeyError: 'Q'" in before[0] and "(exit 1)" in before[0]
    assert not raises(after[0]) and "(last line: checking)(exit 2)" in after[0]
    assert before[1] == after[1] == "not found: absent-tool"
    assert before[2].endswith("!raises timeout")  # and the runner returned: the backgrounded sleep was killed too
    # The command ran beside the file the issue shows, in a folder that is the same on every run.
    assert after[3].startswith("the issue's test")
    (tmp_path / "again").mkdir()
    assert _run_runner(tmp_path / "again", probes, crash=False)["p1"] == after


def test_a_command_reaching_the_output_the_issue_shows_is_a_fix():
    issue = normalize_output("with 5.x:\n==== 1 xfailed in 0.07s ====\nwith 6.0 it fails")
    failing, fixed = "x (last line: ==== 1 failed in ?s ====)(exit 1)", "x (last line: ==== 1 xfailed in ?s ====)(exit 0)"
    assert reaches_shown_output(failing, fixed, issue) and not reaches_shown_output(fixed, failing, issue)
    assert not reaches_shown_output(failing, "x (last line: 1 passed in ?s)(exit 0)", issue)
    assert reaches_shown_output("!raises timeout", fixed, issue)  # the original printed no last line
