"""Drill of issue 14 item 12: bad input gets one line naming the culprit, before anything is made or paid."""

from __future__ import annotations

import json

import pytest

from tests.patchswarm.test_cli import SCRIPTED_ROLES, error_line, invoke

GOOD = {"repo": ".", "commit": "HEAD", "issue": "x"}


def batch(tmp_path, tasks):
    return invoke("batch", "--tasks", str(tasks), "--run-dir", str(tmp_path / "run"), *SCRIPTED_ROLES)


def test_non_utf8_task_file_names_file_line_and_byte(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"repo": ".", "commit": "HEAD", "issue": "caf\xe9"}\n')
    line = error_line(batch(tmp_path, tasks))
    assert "tasks.jsonl line 2: not UTF-8 text (byte 0xe9)" in line
    assert not (tmp_path / "run").exists()


def test_empty_task_file_says_so(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("\n  \n")
    line = error_line(batch(tmp_path, tasks))
    assert "tasks.jsonl: no tasks in the file (it is empty)" in line


def test_whitespace_only_issue_is_refused_in_batch_before_any_call(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "issue": " \n\t "}) + "\n")
    line = error_line(batch(tmp_path, tasks))
    assert "tasks.jsonl line 2: the issue is empty" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("preds.jsonl", b'{"instance_id": "a", "model_patch": ""}\n{"instance_id": \n', "preds.jsonl line 2: not valid JSON"),
    ("preds.json", b"[{\"instance_id\": \"a\",", "preds.json: not valid JSON"),
    ("preds.jsonl", b'{"instance_id": "a", "model_patch": "caf\xe9"}\n', "preds.jsonl line 1: not UTF-8 text (byte 0xe9)"),
])
def test_bad_prediction_file_is_named(tmp_path, name, content, expected):
    predictions = tmp_path / name
    predictions.write_bytes(content)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({**GOOD, "instance_id": "a"}) + "\n")
    result = invoke("select", "-p", str(predictions), "--tasks", str(tasks), "--run-dir", str(tmp_path / "run"),
                    "--out", str(tmp_path / "out.jsonl"), *SCRIPTED_ROLES)
    assert result.exit_code == 1
    assert expected in error_line(result)


def test_non_utf8_diff_file_is_named(tmp_path):
    patches = tmp_path / "patches" / "a"
    patches.mkdir(parents=True)
    (patches / "one.diff").write_bytes(b"--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+caf\xe9\n")
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({**GOOD, "instance_id": "a"}) + "\n")
    result = invoke("select", "--patch-dir", str(tmp_path / "patches"), "--tasks", str(tasks),
                    "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "out.jsonl"), *SCRIPTED_ROLES)
    assert result.exit_code == 1
    assert "one.diff line 5: not UTF-8 text (byte 0xe9)" in error_line(result)
