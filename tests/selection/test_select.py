"""Selection end to end with the scripted model, on in-process sandboxes (the vote also on Docker)."""

from __future__ import annotations

import asyncio
import re

from agent.budget import Budget
from agent.scripted import Fault, text_of
from selection import Candidate, GeneratedTest, SelectionConfig, select_patch
from tests.selection.conftest import candidate, repro_test

NO_SELECTOR = {"selector_enabled": False}

DISCRIMINATING_TEST = """\
import sys

from mathlib import stats


def check(label, call, expected):
    try:
        got = call()
    except Exception as exc:  # a crash is a wrong answer too
        got = exc
    ok = got == expected and type(got) is type(expected)
    print(label, "->", repr(got), "ok" if ok else "WRONG")
    return ok


results = [
    check("median([4, 1, 3, 2])", lambda: stats.median([4, 1, 3, 2]), 2.5),
    check("median([])", lambda: stats.median([]), None),
    check("mean([])", lambda: stats.mean([]), None),
]
sys.exit(0 if all(results) else 2)
"""


def everything() -> list[Candidate]:
    popular = candidate("popular")
    # A copy that only picked up CRLFs and trailing spaces in transit: the same patch, run once.
    copy = Candidate(id="popular_copy", patch=popular.patch.replace("\n", "  \r\n"), source="copy")
    return [candidate("unappliable"), popular, copy, candidate("popular_spaces"), candidate("breaker"),
            candidate("right"), Candidate(id="empty", patch="")]


def all_tests() -> list[GeneratedTest]:
    return [repro_test("mean_empty"), repro_test("mean_empty", "mean_empty_again", suffix="  \n\n"),
            repro_test("median_empty"), repro_test("passes_on_original"), repro_test("flaky_counter")]


def select(pool, repo, issue, candidates, tests=None, model=None, budget=None, **config):
    return asyncio.run(select_patch(candidates, pool=pool, repo_dir=repo, issue=issue, tests=tests, model=model,
                                    budget=budget, config=SelectionConfig(**config)))


def test_votes_regressions_and_cache(either_pool, stats_repo, issue, tmp_path):
    pool = either_pool
    repo, _ = stats_repo
    cache = {"cache_dir": tmp_path / "cache", **NO_SELECTOR}
    result = select(pool, repo, issue, everything(), all_tests(), **cache)

    # The right patch wins over the popular half-fix (and its variants), and over the equally voted
    # (smaller) patch that breaks an existing test.
    assert (result.chosen_id, result.method) == ("right", "vote")
    assert "selector disabled" in result.reason and "breaks 1 existing test" in result.reason
    assert result.patch == candidate("right").patch
    right, breaker, popular = result.candidate("right"), result.candidate("breaker"), result.candidate("popular")
    assert (right.votes, breaker.votes, popular.votes) == (2, 2, 1)
    assert right.regressions == [] and breaker.regressions == ["tests.teststats.MedianTest.test_median_even"]
    assert [right.rank, breaker.rank, popular.rank] == [1, 2, 3]
    copy, spaces = result.candidate("popular_copy"), result.candidate("popular_spaces")
    assert copy.duplicate_of == "popular" and copy.votes == 1 and copy.status == "ok"  # CRLF, trailing spaces
    assert spaces.duplicate_of is None and spaces.votes == 1 and spaces.rank == 4  # inner spaces: runs itself
    assert popular.support == spaces.support == 4  # they agree up to whitespace, and so does the text...
    unappliable = result.candidate("unappliable")  # ...but its own text does not apply, so it cannot win
    assert unappliable.status == "apply_failed" and unappliable.rank is None and "does not apply" in unappliable.apply_error
    assert result.candidate("empty").status == "empty" and result.candidate("empty").rank is None

    statuses = {t.id: t.status for t in result.tests}
    assert statuses == {"mean_empty": "voting", "mean_empty_again": "duplicate", "median_empty": "voting",
                        "passes_on_original": "passes_on_original", "flaky_counter": "flaky"}
    assert result.matrix["flaky_counter"]["original"].exit_code == 2
    assert result.matrix["flaky_counter"]["original#2"].exit_code == 0
    assert result.matrix["median_empty"]["popular_copy"].exit_code == 2
    assert result.matrix["median_empty"]["popular_spaces"].exit_code == 2
    assert result.matrix["median_empty"]["unappliable"].apply_failed
    assert result.regression.runner == "unittest" and result.regression.baseline_passing == 4
    assert result.regression.test_files == ["tests/teststats.py", "tests/testbroken.py"]
    assert result.regression.unknown == ["tests/testbroken.py"]  # cannot import numpy: says nothing
    assert len(result.groups) == 4  # popular_spaces was not regression-checked: a group of its own

    # 4 distinct tests: 8 runs on the original + 4 x 4 applying patches + at most 2 tries of the
    # unappliable text (pool of 2) + regression (probe, 2 files x (2 original + 3 finalists)) + one
    # compile check per applying patch (hygiene); the issue holds no code, so no probes run.
    assert result.probes.probes == 0
    assert 8 + 16 + 1 + 4 <= result.executions_performed <= 8 + 16 + 2 + 1 + 10 + 4

    again = select(pool, repo, issue, everything(), all_tests(), **cache)
    assert again.executions_performed == 0 and again.executions_cached > 0
    assert (again.chosen_id, again.method, again.reason) == (result.chosen_id, result.method, result.reason)

    more = select(pool, repo, issue, [*everything(), candidate("alternative")], all_tests(), **cache)
    # Only the new distinct patch runs: 4 tests and its compile check, plus its regression run on 2 files
    # when it is a finalist.
    assert 5 <= more.executions_performed <= 7
    assert more.candidate("alternative").votes == 2


def test_each_step_of_a_selection_is_announced(pool, stats_repo, issue):
    repo, _ = stats_repo
    stages: list[str] = []
    result = asyncio.run(select_patch(everything(), pool=pool, repo_dir=repo, issue=issue, tests=all_tests(),
                                      config=SelectionConfig(**NO_SELECTOR), on_stage=stages.append))
    assert result.chosen_id == "right"
    # 4 distinct tests, 6 distinct patch texts (the CRLF copy is the same patch); then the LLM-free checks
    # on the 4 that can win (not the empty one, not the one that does not apply).
    assert stages[0] == "matrix: 4 test(s) x 6 patch(es) and the original"
    assert [s.split(":")[0] for s in stages] == ["matrix", "hygiene", "probes", "regression"]
    assert stages[1] == "hygiene: 4 patch(es)" and stages[3].startswith("regression: ")


def test_selector_picks_via_discriminating_test(pool, stats_repo, issue, scripted, model_client):
    repo, _ = stats_repo

    def selector(messages):
        last = text_of(messages[-1]["content"])
        if "Your test was run" not in last:
            return f"I will check the even-length median too.\n<test>\n{DISCRIMINATING_TEST}</test>"
        passing = re.findall(r"### Candidate (\w): exit 0", last)
        return f"<choice>{passing[0]}</choice>"

    scripted.add("sel", selector)
    tests = [repro_test("mean_empty"), repro_test("median_empty")]
    cands = [candidate("popular"), candidate("breaker"), candidate("right")]
    # Without the regression check the vote prefers the smaller breaker (tied votes): the selector must not.
    result = select(pool, repo, issue, cands, tests, model=model_client, regression_enabled=False)

    assert (result.method, result.chosen_id) == ("selector", "right")
    assert result.finalists == ["breaker", "right", "popular"]
    prompt = text_of(scripted.calls("sel")[0][1]["content"])
    assert "def median(values):" in prompt and '<candidate label="B">' in prompt and "<example_test>" in prompt
    assert len(scripted.calls("sel")) == 2 and len(result.selector_transcript) == 5
    assert result.matrix["selector-1"]["right"].exit_code == 0
    assert result.matrix["selector-1"]["breaker"].exit_code == 2
    assert result.test("selector-1").status == "selector"
    assert result.cost_usd > 0 and result.unknown_cost_calls == 0


def test_selector_failures_fall_back_to_the_vote(pool, stats_repo, issue, scripted, model_client, tmp_path):
    repo, _ = stats_repo
    tests = [repro_test("mean_empty"), repro_test("median_empty")]
    cands = [candidate("popular"), candidate("right")]
    shared = {"cache_dir": tmp_path / "cache", "regression_enabled": False}

    scripted.add("sel", ["Both look fine to me.", "<choice>Z</choice>", Fault.malformed("<choice>")])
    bad = select(pool, repo, issue, cands, tests, model=model_client, **shared)
    assert (bad.method, bad.chosen_id) == ("fallback", "right")
    assert "no valid choice after 3 selector replies" in bad.reason and "falling back to the vote" in bad.reason
    assert [m.role for m in bad.selector_transcript] == ["system", "user"] + ["assistant", "user"] * 2 + ["assistant"]
    assert "'Z' is not a candidate label" in bad.selector_transcript[5].content

    scripted.add("sel", [])  # exhausted script: the call fails for good
    broken = select(pool, repo, issue, cands, tests, model=model_client, **shared)
    assert broken.method == "fallback" and "selector call 1 failed" in broken.reason
    assert broken.executions_performed == 0  # the matrix came from the cache

    spent = Budget(0.0, "spent")
    poor = select(pool, repo, issue, cands, tests, model=model_client, budget=spent, **shared)
    assert poor.method == "fallback" and "budget 'spent' exhausted" in poor.reason


def test_llm_free_mode_uses_the_repos_own_tests(pool, stats_repo, issue):
    repo, _ = stats_repo
    cands = [candidate("breaker"), candidate("right"), candidate("popular"), candidate("popular_spaces")]
    result = select(pool, repo, issue, cands, **NO_SELECTOR)

    assert result.method == "vote" and result.chosen_id != "breaker"
    assert "LLM-free" in result.reason and "no generated tests" in result.reason
    assert result.candidate("breaker").regressions and all(
        result.candidate(c).regression_checked for c in ("breaker", "right", "popular", "popular_spaces"))
    # popular_spaces differs from popular in inner spaces, so it runs too, and behaves the same.
    assert result.candidate("breaker").rank == 4 and len(result.groups) == 2


def test_nothing_to_select(pool, stats_repo, issue):
    repo, _ = stats_repo
    assert select(pool, repo, issue, []).method == "nothing_to_select"

    result = select(pool, repo, issue, [Candidate(id="empty", patch=" \n"), candidate("unappliable")],
                    [repro_test("mean_empty")])
    assert (result.method, result.chosen_id, result.patch) == ("nothing_to_select", None, "")
    assert "1 empty, 1 do not apply" in result.reason


def test_generated_tests_on_demand_and_one_behaviour_group(pool, stats_repo, issue, scripted, model_client):
    repo, _ = stats_repo
    asked = []

    async def generate_tests():
        asked.append(True)
        return [repro_test("mean_empty"), repro_test("median_empty")]

    scripted.add("sel", [])  # any selector call would fail the selection into "fallback"
    cands = [candidate("right"), candidate("alternative")]
    result = asyncio.run(select_patch(cands, pool=pool, repo_dir=repo, issue=issue, generate_tests=generate_tests,
                                      model=model_client, config=SelectionConfig()))
    assert asked == [True]
    assert (result.method, result.chosen_id) == ("vote", "alternative")  # same behaviour: the smaller patch
    assert "one behaviour group" in result.reason and "smaller patch" in result.reason
    assert len(result.groups) == 1 and scripted.calls("sel") == []


def test_consensus_counts_systems_not_submissions(pool, stats_repo, issue):
    """Three runs of one system submitting the same half-fix agree less than two systems submitting
    the full fix: one system's variants are not independent (on real pools they repeat one mistake)."""
    repo, _ = stats_repo
    cands = [candidate("popular", f"acme_run{n}") for n in (1, 2, 3)]
    cands += [candidate("right", "beta_agent"), candidate("right", "gamma-v2")]
    result = select(pool, repo, issue, cands, **NO_SELECTOR)
    assert result.chosen_id == "beta_agent"
    assert "2 propose the same change" in result.reason
    assert "ahead of acme_run1 on patch agreement" in result.reason


SHELL_ISSUE = '''

Reproduce with this script:

```python
# content of check_empty.py
from mathlib import stats
print("mean of nothing:", stats.mean([]))
```

```console
$ python check_empty.py
```

It should print:

```
mean of nothing: None
```

and this should not crash:

```console
$ python -c "from mathlib import stats; print(stats.median([]))"
```
'''


def test_shell_commands_of_the_issue_run_in_the_sandbox_beside_the_file_it_shows(docker_pool, stats_repo, issue):
    repo, _ = stats_repo
    cands = [candidate("right"), candidate("breaker")]
    result = select(docker_pool, repo, issue + SHELL_ISSUE, cands, **NO_SELECTOR)
    # The script (also a probe of its own), and both commands beside it, ran twice on the original with the
    # same result, and all three crash there.
    assert (result.probes.probes, result.probes.steps_stable, result.probes.steps_reproducing) == (3, 3, 3)
    # The right patch makes the script, run beside the file the issue shows, print the issue's line, and the
    # median call stop crashing.
    assert result.candidate("right").probe_fixes == 3 and result.chosen_id == "right"
