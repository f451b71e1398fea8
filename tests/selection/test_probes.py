"""Issue probes and hygiene read from text alone, and the confidence of a ranked choice."""

from __future__ import annotations

from selection.hygiene import static_hygiene
from selection.probes import expected_by_issue, extract_probes
from selection.scoring import EvidenceKinds, PatchEvidence, confidence

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
