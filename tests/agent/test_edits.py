"""Tests for agent.edit.blocks: parsing, applying against pristine repos, and real `git apply` of the diffs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.edit.blocks import (
    EDIT_FORMAT_INSTRUCTIONS,
    EditError,
    EditFormatError,
    FileEdit,
    SearchReplace,
    apply_edit_text,
    apply_edits,
    diff_stats,
    normalize_patch,
    parse_edits,
)
from agent.edit.diff import loose_patch_text, render_file_diff

PY_SOURCE = "import os\n\n\ndef greet(name):\n    return 'hello ' + name\n\n\ndef part():\n    return 1\n"


def make_repo(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    for name, content in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    return repo


def snapshot(repo: Path) -> dict[str, bytes]:
    return {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if ".git" not in p.relative_to(repo).parts and p.is_file() and not p.is_symlink()
    }


def git_apply(repo: Path, diff: str) -> None:
    """`git apply --check` then `git apply` the diff for real; fail the test with git's message."""
    patch = repo.parent / "candidate.diff"
    patch.write_bytes(diff.encode("utf-8"))
    for args in (["git", "apply", "--check", str(patch)], ["git", "apply", str(patch)]):
        done = subprocess.run(args, cwd=repo, capture_output=True, text=True)
        assert done.returncode == 0, f"{args} failed: {done.stderr}\n--- diff ---\n{diff}"


def block(path: str, *pairs: tuple[str, str]) -> str:
    body = "".join(
        f"<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n" for search, replace in pairs
    )
    return f"<edit>\n{path}\n{body}</edit>\n"


def apply_and_check(repo: Path, text: str) -> dict[str, bytes]:
    """Apply an edit message, assert repo_dir was untouched, git-apply the diff, return new contents."""
    before = snapshot(repo)
    result = apply_edit_text(repo, text)
    assert snapshot(repo) == before, "apply_edits must not modify repo_dir"
    git_apply(repo, result.diff)
    for change in result.files:
        target = repo / change.path
        if change.new_text is None:
            assert not target.exists()
        else:
            assert target.read_bytes() == change.new_text.encode("utf-8")
    return snapshot(repo)


def rejection(repo: Path, text: str) -> str:
    with pytest.raises(EditError) as caught:
        apply_edit_text(repo, text)
    return caught.value.message


# ---------------------------------------------------------------- parsing


def test_parse_single_block_and_surrounding_prose() -> None:
    text = "I will fix it.\n```\n" + block("src/a.py", ("old\n", "new\n")) + "```\nDone."
    assert parse_edits(text) == [
        FileEdit(path="src/a.py", blocks=[SearchReplace(search_lines=["old"], replace_lines=["new"])])
    ]


def test_parse_several_pairs_files_deletes_and_merging() -> None:
    text = (
        block("a.py", ("1\n", "one\n"), ("2\n", "")) + "<delete>gone.txt</delete>\n"
        "<edit> ./b.md\n```markdown\n<<<<<<< SEARCH\n# T\n=======\n# Title\n>>>>>>> REPLACE\n```\n"
        "c.txt\n<<<<<<< SEARCH\n\n=======\nnew file\n>>>>>>> REPLACE\n</edit>\n"
        + block("a.py", ("3\n", "three\n"))
    )
    edits = {edit.path: edit for edit in parse_edits(text)}
    assert list(edits) == ["a.py", "b.md", "c.txt", "gone.txt"]
    assert [b.search_lines for b in edits["a.py"].blocks] == [["1"], ["2"], ["3"]]
    assert edits["a.py"].blocks[1].replace_lines == []
    assert edits["c.txt"].blocks[0].search_lines == []  # blank SEARCH = create
    assert edits["gone.txt"].delete


def test_format_instructions_example_parses() -> None:
    (edit,) = parse_edits(EDIT_FORMAT_INSTRUCTIONS)
    assert edit.path == "path/to/file.py" and len(edit.blocks) == 1
    assert "<delete>" in EDIT_FORMAT_INSTRUCTIONS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Just prose, no edit.", "no <edit> or <delete> blocks"),
        ("<edit>\na.py\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n", "is not closed: add '</edit>'"),
        ("<edit>\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n</edit>", "has no file path"),
        ("<edit>\na.py\n<<<<<<< SEARCH\nx\n>>>>>>> REPLACE\n</edit>", "expected the '=======' divider"),
        ("<edit>\na.py\n<<<<<<< SEARCH\nx\n=======\ny\n</edit>", "expected '>>>>>>> REPLACE'"),
        ("<edit>\na.py\n<<<<<<< SEARCH\nx\n=======\ny", "needs '>>>>>>> REPLACE'"),
        ("a.py\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n", "outside an <edit> block"),
        ("<edit>\na.py\nI will now change x\n<<<<<<< SEARCH\n", "expected '<<<<<<< SEARCH' after the path"),
        ("<edit>\na.py\n</edit>", "contains no SEARCH/REPLACE pair"),
        ("<edit>\na.py\n=======\n</edit>", "without a '<<<<<<< SEARCH'"),
        ("<edit>\na.py\n<edit>\n", "before the <edit> block opened at line 1 was closed"),
        (block("a.py", ("x\n", "y\n")) + "<delete>a.py</delete>", "both deleted"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(EditFormatError) as caught:
        parse_edits(text)
    assert expected in caught.value.message
    assert "Expected format" in caught.value.message


# ---------------------------------------------------------------- applying


def test_modify_multiple_pairs_sequentially_and_several_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"pkg/a.py": PY_SOURCE, "docs/readme.md": "# Title\n\nText.\n"})
    text = block(
        "pkg/a.py",
        (
            "def greet(name):\n    return 'hello ' + name\n",
            "def greet(name: str) -> str:\n    return f'hi {name}'\n",
        ),
        (
            "def greet(name: str) -> str:\n",
            "def greet(name: str = 'x') -> str:\n",
        ),  # sees the 1st pair's text
        ("    return 1\n", "    return 2\n"),
    ) + block("docs/readme.md", ("Text.\n", "Better text.\n"))
    assert diff_stats(apply_edit_text(repo, text).diff) == (2, 4, 4)
    after = apply_and_check(repo, text)
    assert b"def greet(name: str = 'x') -> str:\n    return f'hi {name}'\n" in after["pkg/a.py"]
    assert after["pkg/a.py"].endswith(b"    return 2\n")
    assert after["docs/readme.md"] == b"# Title\n\nBetter text.\n"


def test_second_edit_replaces_the_first_edits_never_stack(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.py": PY_SOURCE})
    first = apply_edit_text(repo, block("a.py", ("    return 1\n", "    return 2\n")))
    second = apply_edit_text(repo, block("a.py", ("import os\n", "import sys\n")))
    assert "return 2" in first.diff and "return 2" not in second.diff
    assert (repo / "a.py").read_text() == PY_SOURCE
    # Searching for the first edit's result fails: the original file does not have it.
    assert "were not found" in rejection(repo, block("a.py", ("    return 2\n", "    return 3\n")))


def test_create_files_including_empty_and_nested(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.py": "x = 1\n", "empty.txt": ""})
    text = (
        block("new/dir/mod.py", ("", "def f():\n    return 1\n"))
        + block("new/__init__.py", ("", ""))
        + block("empty.txt", ("", "filled\n"))  # an existing empty file may be filled
    )
    result = apply_edit_text(repo, text)
    assert "new file mode 100644\n--- /dev/null\n+++ b/new/dir/mod.py\n@@ -0,0 +1,2 @@" in result.diff
    assert [(c.path, c.status) for c in result.files] == [
        ("new/dir/mod.py", "created"),
        ("new/__init__.py", "created"),
        ("empty.txt", "modified"),
    ]
    after = apply_and_check(repo, text)
    assert after["new/dir/mod.py"] == b"def f():\n    return 1\n"
    assert after["new/__init__.py"] == b""
    assert after["empty.txt"] == b"filled\n"


def test_delete_files_including_empty_and_executable(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.py": "x = 1\n", "b.txt": "", "run.sh": "#!/bin/sh\necho hi"})
    os.chmod(repo / "run.sh", 0o755)
    result = apply_edit_text(repo, "<delete>a.py</delete>\n<delete>b.txt</delete>\n<delete>run.sh</delete>")
    assert "deleted file mode 100644\n--- a/a.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x = 1\n" in result.diff
    assert "deleted file mode 100755" in result.diff
    assert [c.status for c in result.files] == ["deleted"] * 3
    assert (
        apply_and_check(repo, "<delete>a.py</delete>\n<delete>b.txt</delete>\n<delete>run.sh</delete>") == {}
    )


def test_files_without_final_newline(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"last.txt": "a\nb\nc", "middle.txt": "a\nb\nc", "drop.txt": "a\nb"})
    text = (
        block("last.txt", ("c\n", "C\nD\n"))
        + block("middle.txt", ("a\n", "A\n"))
        + block("drop.txt", ("b\n", ""))
    )
    result = apply_edit_text(repo, text)
    assert "-c\n\\ No newline at end of file\n+C\n+D\n\\ No newline at end of file\n" in result.diff
    assert " c\n\\ No newline at end of file\n" in result.diff  # context line of middle.txt
    after = apply_and_check(repo, text)
    assert after == {"last.txt": b"a\nb\nC\nD", "middle.txt": b"A\nb\nc", "drop.txt": b"a\n"}


@pytest.mark.parametrize(("old", "new"), [("a\nb\n", "a\nb"), ("a\nb", "a\nb\n"), ("a", ""), ("", "x")])
def test_rendered_diff_newline_transitions_apply(tmp_path: Path, old: str, new: str) -> None:
    repo = make_repo(tmp_path, {"f.txt": old})
    git_apply(repo, render_file_diff("f.txt", old, new).text)
    assert (repo / "f.txt").read_text() == new


def test_crlf_line_endings_are_preserved(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"win.txt": b"one\r\ntwo\r\nthree\r\n"})
    after = apply_and_check(repo, block("win.txt", ("two\n", "TWO\n2b\n")))
    assert after["win.txt"] == b"one\r\nTWO\r\n2b\r\nthree\r\n"


def test_utf8_bom_is_kept_and_hidden_from_matching(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"bom.py": "\ufeffx = 1\ny = 2\n"})
    after = apply_and_check(repo, block("bom.py", ("x = 1\n", "x = 3\n")))
    assert after["bom.py"] == "\ufeffx = 3\ny = 2\n".encode()


def test_unusual_path_names_are_quoted_for_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"with space/f ile.txt": "a\n", "naïve.txt": "b\n"})
    after = apply_and_check(
        repo, block("with space/f ile.txt", ("a\n", "A\n")) + block("naïve.txt", ("b\n", "B\n"))
    )
    assert after["with space/f ile.txt"] == b"A\n" and after["naïve.txt"] == b"B\n"


def test_apply_edits_takes_models_and_normalises_paths(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.py": "x = 1\n"})
    pair = SearchReplace(search_lines=["x = 1"], replace_lines=["x = 2"])
    result = apply_edits(repo, [FileEdit(path="./a.py", blocks=[pair])])
    assert result.files[0].path == "a.py" and result.files[0].new_text == "x = 2\n"
    with pytest.raises(EditError) as caught:
        apply_edits(repo, [FileEdit(path="a.py", blocks=[pair]), FileEdit(path="a.py", delete=True)])
    assert "appears in two FileEdits" in caught.value.message


def test_edit_that_changes_nothing_is_rejected(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.py": "x = 1\n"})
    assert "changes nothing" in rejection(repo, block("a.py", ("x = 1\n", "x = 1\n")))


# ---------------------------------------------------------------- error messages


def test_whitespace_only_difference_shows_did_you_mean(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.py": PY_SOURCE})
    message = rejection(repo, block("a.py", ("def greet(name):\n  return 'hello ' + name\n", "x\n")))
    assert "differ only in whitespace" in message and "lines 4-5" in message
    assert "```\ndef greet(name):\n    return 'hello ' + name\n```" in message


def test_near_miss_shows_closest_region_with_line_numbers(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.py": PY_SOURCE})
    message = rejection(repo, block("a.py", ("def greet(nme):\n    return 'helo ' + name\n", "x\n")))
    assert "closest region" in message and "lines 4-5" in message
    assert "    4 | def greet(name):\n    5 |     return 'hello ' + name" in message


def test_near_miss_in_a_big_file_is_fast_and_found(tmp_path: Path) -> None:
    lines = [f"value_{n} = compute({n}, factor={n % 7})" for n in range(6000)]
    repo = make_repo(tmp_path, {"big.py": "\n".join(lines) + "\n"})
    search = "value_4000 = compute(4000, factor=3)\nvalue_4001 = compute(4001, factr=4)\n"
    message = rejection(repo, block("big.py", (search, "x\n")))
    assert " 4002 | value_4001 = compute(4001, factor=4)" in message


def test_search_text_found_in_another_file(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.py": "x = 1\n", "pkg/b.py": "import os\n\ndef helper():\n    pass\n"})
    message = rejection(repo, block("a.py", ("def helper():\n    pass\n", "def helper():\n    return 1\n")))
    assert "appear exactly in 'pkg/b.py' (line 3)" in message


def test_multiple_matches_lists_line_numbers(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.py": "x = 1\ny = 2\nx = 1\nz = 3\nx = 1\n"})
    message = rejection(repo, block("a.py", ("x = 1\n", "x = 9\n")))
    assert "match 3 places (starting at lines 1, 3, 5)" in message and "more surrounding lines" in message


def test_missing_file_suggests_create_syntax_and_similar_paths(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"pkg/module.py": "x = 1\n"})
    message = rejection(repo, block("pkg/modul.py", ("y = 2\n", "y = 3\n")))
    assert (
        "'pkg/modul.py': the file does not exist" in message and "leave the SEARCH section empty" in message
    )
    assert "'pkg/module.py'" in message


def test_create_existing_and_delete_missing_are_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.py": "x = 1\n"})
    assert "already exists" in rejection(repo, block("a.py", ("", "y = 2\n")))
    assert "Cannot delete 'nope.py': no such file" in rejection(repo, "<delete>nope.py</delete>")


def test_pair_overlapping_an_earlier_pair_is_explained(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.py": PY_SOURCE})
    message = rejection(repo, block("a.py", ("import os\n", "import sys\n"), ("import os\n\n", "")))
    assert "pair 2" in message and "earlier SEARCH/REPLACE block of this edit already changed them" in message


def test_all_problems_are_collected_into_one_message(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.py": "x = 1\n"})
    with pytest.raises(EditError) as caught:
        apply_edit_text(repo, block("a.py", ("nothing like it\n", "z\n")) + "<delete>b.py</delete>")
    assert len(caught.value.problems) == 2
    assert "\n\n1. " in caught.value.message and "\n\n2. " in caught.value.message
    assert (repo / "a.py").read_text() == "x = 1\n"


# ---------------------------------------------------------------- path safety


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("../x.py", "'..' components are not allowed"),
        ("sub/../../x.py", "'..' components are not allowed"),
        ("/etc/passwd", "it is absolute"),
        (".git/config", "inside .git/"),
        ("sub/.git/hooks/pre-commit", "inside .git/"),
    ],
)
def test_unsafe_paths_are_refused(tmp_path: Path, path: str, expected: str) -> None:
    repo = make_repo(tmp_path, {"a.py": "x = 1\n"})
    message = rejection(repo, block(path, ("x = 1\n", "x = 2\n")))
    assert expected in message and path in message
    assert expected in rejection(repo, f"<delete>{path}</delete>")


def test_symlinks_escaping_the_repo_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("x = 1\n")
    repo = make_repo(tmp_path, {"real/a.py": "x = 1\n"})
    (repo / "link.txt").symlink_to(outside / "secret.txt")
    (repo / "linkdir").symlink_to(outside)
    (repo / "inner").symlink_to(repo / "real")
    for path in ("link.txt", "linkdir/secret.txt", "linkdir/new.txt"):
        assert "resolves outside the repository" in rejection(repo, block(path, ("x = 1\n", "x = 2\n")))
    assert "edit the real file 'real/a.py'" in rejection(repo, block("inner/a.py", ("x = 1\n", "x = 2\n")))
    assert (outside / "secret.txt").read_text() == "x = 1\n"


def test_binary_files_and_binary_content_are_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"img.bin": b"PNG\0\1\2", "latin.txt": "caf\xe9\n".encode("latin-1")})
    assert "'img.bin' is a binary file" in rejection(repo, block("img.bin", ("PNG\n", "x\n")))
    assert "'img.bin' is a binary file" in rejection(repo, "<delete>img.bin</delete>")
    assert "not valid UTF-8" in rejection(repo, block("latin.txt", ("x\n", "y\n")))
    assert "NUL byte" in rejection(repo, block("new.bin", ("", "a\0b\n")))


def test_directories_are_not_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"pkg/a.py": "x = 1\n"})
    assert "'pkg' is a directory" in rejection(repo, block("pkg", ("x = 1\n", "y\n")))
    assert "'pkg/a.py' is a file, not a directory" in rejection(repo, block("pkg/a.py/b.py", ("", "y\n")))


# ---------------------------------------------------------------- stats and normalisation


def test_diff_stats_counts_files_and_lines(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"a.py": "x = 1\ny = 2\n", "b.py": "z = 3"})
    result = apply_edit_text(repo, block("a.py", ("y = 2\n", "y = 3\nw = 4\n")) + "<delete>b.py</delete>")
    assert diff_stats(result.diff) == (2, 2, 2)
    assert diff_stats("") == (0, 0, 0)


def _patch(tmp_path: Path, name: str, source: str, text: str) -> str:
    return apply_edit_text(make_repo(tmp_path / name, {"a.py": source}), text).diff


def test_loose_patch_text_ignores_whitespace_only_differences(tmp_path: Path) -> None:
    source = "def f(x):\n    if x:\n        return 1\n    return 2\n\n\ndef g():\n    pass\n"
    base = _patch(tmp_path, "base", source, block("a.py", ("        return 1\n", "        return x + 1\n")))
    variants = [
        # Different spacing inside the changed line, and trailing whitespace.
        block("a.py", ("        return 1\n", "        return x+1   \n")),
        # An extra blank line added next to the change, plus re-indenting a neighbouring line.
        block("a.py", ("    if x:\n        return 1\n", "    if  x:\n\n        return x + 1\n")),
        # A whitespace-only change elsewhere in the file.
        block("a.py", ("        return 1\n", "        return x + 1\n"), ("def g():\n", "def g():  \n")),
    ]
    for number, text in enumerate(variants):
        variant = _patch(tmp_path, f"v{number}", source, text)
        assert loose_patch_text(variant) == loose_patch_text(base)  # they agree (reporting)...
        assert normalize_patch(variant) != normalize_patch(base)  # ...but each one runs
    assert loose_patch_text(base) and loose_patch_text("") == ""


def test_normalize_patch_keeps_real_differences(tmp_path: Path) -> None:
    source = "a = 1\nb = 2\nc = 3\nd = 4\n"
    base_text = _patch(tmp_path, "base", source, block("a.py", ("b = 2\n", "b = 20\n")))
    others = [
        block("a.py", ("b = 2\n", "b = 21\n")),  # different content
        block("a.py", ("d = 4\n", "d = 4\nb = 20\n"), ("b = 2\n", "")),  # same text, other place
        block("a.py", ("a = 1\nb = 2\n", "b = 2\na = 1\n")),  # moving a line is not whitespace
    ]
    for number, text in enumerate(others):
        other = _patch(tmp_path, f"o{number}", source, text)
        assert normalize_patch(other) != normalize_patch(base_text)
        assert loose_patch_text(other) != loose_patch_text(base_text)


INDENT_DIFF = """\
diff --git a/m.py b/m.py
--- a/m.py
+++ b/m.py
@@ -1,4 +1,5 @@
 def f(x, y):
     if x:
         y = y + 1
+{added}
     return 0
"""


def test_normalize_patch_keeps_indentation_and_inner_spaces() -> None:
    # Inside the if, at function level, and a syntax error: three behaviours, three texts.
    texts = {normalize_patch(INDENT_DIFF.format(added=added))
             for added in ("        return y", "    return y", "        returny")}
    assert len(texts) == 3 and "" not in texts


def test_normalize_patch_drops_only_crs_and_trailing_whitespace() -> None:
    diff = INDENT_DIFF.format(added="        return y")
    copies = [diff.replace("\n", "\r\n"), diff.replace("\n", "  \n"), diff.replace("\n", "\t\r\n") + "\n\n"]
    assert {normalize_patch(copy) for copy in copies} == {normalize_patch(diff)}
    assert normalize_patch(" \n\r\n") == normalize_patch("") == ""


@pytest.mark.parametrize("diff", [
    "diff --git a/old.py b/new.py\nsimilarity index 100%\nrename from old.py\nrename to new.py\n",
    "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n",
    "diff --git a/x.bin b/x.bin\nindex e69de29..d00491f 100644\nGIT binary patch\nliteral 1\nIc${NkU;qFB\n\n"
    "literal 0\nHcmV?d00001\n\n",
    "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = 1\n+x  =  1\n",  # whitespace only
])
def test_patches_without_text_changes_are_not_empty(diff: str) -> None:
    assert normalize_patch(diff).startswith("diff --git")
