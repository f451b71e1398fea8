"""predictions.jsonl: appended per instance, one line per instance (the newest), merged across machines."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from patchswarm import predictions
from patchswarm.cli import app


def lines_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_appends_survive_a_torn_line_and_compact_to_the_newest(tmp_path):
    path = tmp_path / "predictions.jsonl"
    predictions.append(path, [predictions.prediction("a", "", "m1"), predictions.prediction("b", "diff b", "m1")])
    with open(path, "a") as handle:
        handle.write('{"instance_id": "c", "model_pat')  # a crash in the middle of a line
    predictions.append(path, [predictions.prediction("a", "diff a", "m2")])
    rows = predictions.read(path)
    assert list(rows) == ["b", "a"] and rows["a"]["model_patch"] == "diff a" and "c" not in rows
    predictions.compact(path, [predictions.prediction("d", "", "m2")])
    assert lines_of(path) == [
        {"instance_id": "b", "model_name_or_path": "m1", "model_patch": "diff b"},
        {"instance_id": "a", "model_name_or_path": "m2", "model_patch": "diff a"},
        {"instance_id": "d", "model_name_or_path": "m2", "model_patch": ""},
    ]


def test_merge_command_combines_machines_later_files_win(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two.jsonl"
    one.mkdir()
    predictions.write(one / "predictions.jsonl", {"a": predictions.prediction("a", "old", "m"),
                                                  "b": predictions.prediction("b", "b", "m")})
    predictions.write(two, {"a": predictions.prediction("a", "new", "m"), "c": predictions.prediction("c", "", "m")})
    out = tmp_path / "all.jsonl"
    result = CliRunner().invoke(app, ["predictions", "merge", str(one), str(two), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{out}: 3 instance(s) (1 in more than one file: the later file's line kept)"
    assert {row["instance_id"]: row["model_patch"] for row in lines_of(out)} == {"a": "new", "b": "b", "c": ""}

    two.write_text('{"instance_id": "x"}\nnot json\n')
    result = CliRunner().invoke(app, ["predictions", "merge", str(two), "--out", str(out)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {two} line 2: not a prediction (a JSON object with instance_id)"
    result = CliRunner().invoke(app, ["predictions", "merge", str(tmp_path / "nope.jsonl"), "--out", str(out)])
    assert result.stderr.strip() == f"error: no predictions file {tmp_path / 'nope.jsonl'}"
