"""Task files (JSONL): accepted spellings, errors naming file and line, --filter/--shuffle/--slice."""

from __future__ import annotations

import json

import pytest

from patchswarm.tasks import Task, TaskError, load_tasks_jsonl, select_tasks, task_id_for


def write_jsonl(path, rows) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_rows_with_both_spellings_and_relative_repos(tmp_path):
    (tmp_path / "repos" / "calc").mkdir(parents=True)
    path = tmp_path / "tasks.jsonl"
    write_jsonl(path, [
        {"instance_id": "one", "repo": "repos/calc", "commit": "abc", "issue": "broken", "setup": "pip install -e .",
         "test_cmd": "pytest -q", "python": "3.11", "hints_text": "dropped",
         "FAIL_TO_PASS": '["test_x"]'},
        "",
        {"repo": "https://example.com/x/calc.git", "base_commit": "def", "problem_statement": "also broken"},
        {"id": "three", "repo": "/abs/calc", "commit": "HEAD", "issue": "third", "setup": ["a", "b"]},
    ])
    one, two, three = load_tasks_jsonl(path)
    assert one == Task(instance_id="one", repo=str((tmp_path / "repos" / "calc").resolve()), commit="abc",
                       issue="broken", setup=["pip install -e ."], test_cmd="pytest -q", python="3.11")
    assert (two.commit, two.issue, two.repo) == ("def", "also broken", "https://example.com/x/calc.git")
    assert two.instance_id == task_id_for("https://example.com/x/calc.git", "def", "also broken")
    assert two.instance_id.startswith("calc-")
    assert (three.instance_id, three.repo, three.setup) == ("three", "/abs/calc", ["a", "b"])


@pytest.mark.parametrize(("lines", "message"), [
    (['{"repo": "r", "commit": "c", "issue": "i"}', '{"repo": '], "line 2: not valid JSON"),
    (['["repo", "commit"]'], "line 1: expected a JSON object"),
    (['{"repo": "r", "commit": "c", "issue": "i"}', '{"repo": "r"}'], "line 2: missing commit, issue"),
    (['{"repo": "r", "commit": "c", "issue": ""}'], "line 1: missing issue"),
    (['{"instance_id": "x", "repo": "r", "commit": "c", "issue": "i"}', "",
      '{"instance_id": "x", "repo": "r", "commit": "d", "issue": "i"}'], "line 3: duplicate instance_id x"),
    (['{"repo": "r", "commit": "c", "issue": "i", "setup": 5}'], "line 1: setup: Input should be a valid list"),
    (['{"repo": "r", "commit": "c", "issue": "i", "test_command": "pytest"}'],
     "line 1: unknown key 'test_command'; did you mean 'test_cmd'?"),
    (['{"repo": "r", "comit": "c", "issue": "i"}'], "line 1: unknown key 'comit'; did you mean 'commit'?"),
    (['{"repo": "r", "commit": "c", "issue": "i", "zzz": 1}'], "line 1: unknown key 'zzz'"),
])
def test_bad_lines_are_named(tmp_path, lines, message):
    path = tmp_path / "tasks.jsonl"
    write_jsonl(path, lines)
    with pytest.raises(TaskError) as caught:
        load_tasks_jsonl(path)
    assert str(caught.value).startswith(f"{path} {message}")
    assert "\n" not in str(caught.value)


def test_unreadable_file(tmp_path):
    with pytest.raises(TaskError, match="cannot read task file .*missing.jsonl"):
        load_tasks_jsonl(tmp_path / "missing.jsonl")


def test_task_ids_are_stable_and_distinct():
    assert task_id_for("/x/calc/", "c", "i") == task_id_for("/x/calc/", "c", "i")
    assert task_id_for("/x/calc", "c", "i").startswith("calc-")
    assert task_id_for("git@host:o/calc.git", "c", "i").startswith("calc-")
    assert len({task_id_for("/x/calc", c, i) for c in "cd" for i in "ij"}) == 4


def make(ids: list[str]) -> list[Task]:
    return [Task(instance_id=i, repo="/r", commit="c", issue="x") for i in ids]


def test_filter_shuffle_slice():
    tasks = make([f"django__{n}" for n in range(6)] + ["flask__1", "flask__2"])
    assert [t.instance_id for t in select_tasks(tasks, pattern="^flask")] == ["flask__1", "flask__2"]
    assert [t.instance_id for t in select_tasks(tasks, slice_spec="1:3")] == ["django__1", "django__2"]
    assert [t.instance_id for t in select_tasks(tasks, slice_spec="-2:")] == ["flask__1", "flask__2"]
    first = [t.instance_id for t in select_tasks(tasks, shuffle_seed=7)]
    assert first == [t.instance_id for t in select_tasks(tasks, shuffle_seed=7)]  # reproducible
    assert sorted(first) == sorted(t.instance_id for t in tasks) and first != [t.instance_id for t in tasks]
    # Shuffle happens before the slice: the slice picks from the shuffled order.
    assert [t.instance_id for t in select_tasks(tasks, shuffle_seed=7, slice_spec=":3")] == first[:3]
    assert [t.instance_id for t in tasks][0] == "django__0", "the input list is not shuffled in place"
    with pytest.raises(TaskError, match="--filter '\\(' is not a valid regex"):
        select_tasks(tasks, pattern="(")
    with pytest.raises(TaskError, match="--slice 'a:b' must look like 'start:stop'"):
        select_tasks(tasks, slice_spec="a:b")
