"""Issue probes: code from the issue text, run on the original and on every candidate (LLM-free evidence).

Probes come from fenced code blocks, doctest (`>>>`) and IPython (`In [1]:`) lines, the calls in a
traceback's `<stdin>`/`<ipython-input>` frames, and shell commands (selection.shell_probes: `pylint -Q`, run in
the repository; a Python traceback in their output counts as raising). All probes run in order in one namespace (the issue author's
session; an expression followed by a `# result` comment is a step with a shown result); every step's
printed output, value (doctest style) or exception is recorded. Evidence, per step whose result on the
original is the same in two runs: the original raises and the candidate does not, or the original shows
the output the issue reports and the candidate's differs, or the candidate's result is one the issue names
and the original's is not (a fix); the original does not raise and the candidate does (a break). A step that behaves the same on original and candidate proves nothing.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from selection.candidates import DistinctPatch, sha256
from selection.matrix import CachedJobRunner, Job
from selection.models import Outcome
from selection.shell_probes import (
    EXCEPTION,
    SHELL_RUNNER,
    IssueFiles,
    is_shell_block,
    reaches_shown_output,
    shell_commands,
)

PROBE_PATH = "/tmp/patchswarm/issue_probes.py"
RESULT_MARKER = "@@patchswarm-probes@@"
MAX_PROBES, MAX_STEPS, STEP_TIMEOUT_S = 8, 40, 10

_FENCE = re.compile(r"^[ \t]*(```|~~~)([^\n]*)\n(.*?)^[ \t]*\1[ \t]*$", re.S | re.M)
# `>>>x` without a space is a prompt too (people type it so); `...` needs one, or it is an ellipsis.
_PROMPT = re.compile(r"^\s*(>>>(?=[^\s>])|(>>>|\.\.\.)( |$))")
_IPY_IN = re.compile(r"^\s*In \[\d+\]:\s?(.*)$")
_IPY_CONT = re.compile(r"^\s*\.\.\.+:\s?(.*)$")
_IPY_OUT = re.compile(r"^\s*Out\[\d+\]:\s?(.*)$")
_FRAME = re.compile(r'^\s*File "(<stdin>|<string>|<input>|<ipython-input-[^"]*>|<module>)", line \d+.*\n\s*(\S.*)$', re.M)
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*File \"[^\"]+\", line \d+", re.M)
_CODE_HINT = re.compile(r"\(|=|^\s*(import|from)\s", re.M)
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")
_DURATION = re.compile(r"\b\d+(\.\d+)?\s?(s|sec|seconds)\b")  # `1 failed in 0.07s`: differs run to run
_SHELL = re.compile(r"^\s*(\$ |pip |python -m |git |conda |cd )", re.M)


class ProbeStep(BaseModel):
    code: str
    shown: str | None = Field(None, description="Output the issue shows after this step (the reported behaviour).")
    files: dict[str, str] = Field(default_factory=dict,
                                  description="Shell steps: files the issue shows that the command names (`pytest test_foo.py`).")


class Probe(BaseModel):
    id: str
    kind: str = Field(description="'doctest', 'script', 'traceback' or 'shell' (each step a command line).")
    steps: list[ProbeStep]


def normalize_output(text: str) -> str:
    """Output as compared: memory addresses and durations masked, whitespace collapsed, length capped (the
    head and the tail kept: a command's summary line comes last)."""
    text = " ".join(_DURATION.sub("?s", _ADDRESS.sub("0x?", text)).split())
    return text if len(text) <= 2000 else text[:1000] + " ... " + text[-1000:]


def _doctest_steps(lines: Sequence[str]) -> list[ProbeStep]:
    """`>>>`/`...` (or IPython In/Out) statements with the output lines the issue shows after them."""
    steps: list[ProbeStep] = []
    code: list[str] = []
    shown: list[str] = []

    def flush() -> None:
        if code:
            steps.append(ProbeStep(code="\n".join(code), shown="\n".join(shown).strip() or None))
        code.clear()
        shown.clear()

    for line in lines:
        ipy, cont = _IPY_IN.match(line), _IPY_CONT.match(line)
        if _PROMPT.match(line):
            text = _PROMPT.sub("", line, count=1)
            if line.lstrip().startswith(">>>"):
                flush()
            code.append(text)
        elif ipy:
            flush()
            code.append(ipy.group(1))
        elif cont and code:
            code.append(cont.group(1))
        elif code and line.lstrip().startswith(("```", "~~~")):
            flush()
        elif code:
            out = _IPY_OUT.match(line)
            shown.append(out.group(1) if out else line.strip())
    flush()
    return [s for s in steps if _parses(s.code)]


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return bool(code.strip())


def _script(block: str) -> str | None:
    code = textwrap.dedent(block).strip("\n")
    if not code or _SHELL.search(code) or not _parses(code):
        return None
    tree = ast.parse(code)
    # A bare name or literal is output pasted into a fence, not a program.
    if all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Name | ast.Constant) for node in tree.body):
        return None
    return code


def _script_steps(code: str) -> list[ProbeStep]:
    """A script cut after each expression followed by a `# output` comment (the issue's shown result)."""
    lines = code.splitlines()
    steps: list[ProbeStep] = []
    start = 0
    for node in ast.parse(code).body:
        end = node.end_lineno or node.lineno
        comment = lines[end].strip() if end < len(lines) else ""
        if isinstance(node, ast.Expr) and comment.startswith("#") and len(comment) > 1:
            steps.append(ProbeStep(code="\n".join(lines[start:end]), shown=comment.lstrip("#").strip()))
            start = end + 1
    rest = "\n".join(lines[start:])
    if _parses(rest):
        steps.append(ProbeStep(code=rest))
    return [s for s in steps if _parses(s.code)] or [ProbeStep(code=code)]


def extract_probes(issue: str, limit: int = MAX_PROBES) -> list[Probe]:
    """Runnable probes from an issue's text, in order of appearance, at most `limit`."""
    issue = issue.replace("\r\n", "\n").replace("\r", "\n")
    probes: list[Probe] = []
    seen: set[str] = set()

    def add(kind: str, steps: list[ProbeStep]) -> None:
        steps = steps[:MAX_STEPS]
        key = "\n".join(s.code for s in steps)
        if steps and key not in seen and len(probes) < limit:
            seen.add(key)
            probes.append(Probe(id=f"probe{len(probes) + 1}", kind=kind, steps=steps))

    outside = _FENCE.sub("\n", issue)
    shown_files = IssueFiles()
    for match in _FENCE.finditer(issue):
        tag, block = match.group(2), match.group(3)
        lines = block.splitlines()
        if is_shell_block(tag, lines):
            add("shell", [ProbeStep(code=command, shown=shown, files=shown_files.named_by(command))
                          for command, shown in shell_commands(lines)])
            continue
        shown_files.add(issue[:match.start()], block, is_python=_parses(textwrap.dedent(block)))
        if any(_PROMPT.match(line) or _IPY_IN.match(line) for line in lines):
            add("doctest", _doctest_steps(lines))
        elif "Traceback (most recent call last)" in block:
            add("traceback", _traceback_steps(block))
        else:
            code = _script(block)
            if code:
                add("script", _script_steps(code))
    add("doctest", _doctest_steps(outside.splitlines()))
    for code in _loose_code(outside):
        add("script", _script_steps(code))
    add("traceback", _traceback_steps(outside))
    return probes


def _is_code(text: str) -> bool:
    if _PROMPT.search(text) or not _CODE_HINT.search(text) or "Traceback (most recent call last)" in text:
        return False
    return _script(text) is not None


def _loose_code(text: str) -> list[str]:
    """Code pasted into the issue without a fence: paragraphs that parse as Python (with a call, an
    assignment or an import), or runs of such lines inside prose; consecutive ones form one script."""
    scripts: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            scripts.append("\n\n".join(current))
        current.clear()

    for paragraph in re.split(r"\n\s*\n", text):
        if not paragraph.strip() or _TRACEBACK.search(paragraph):
            flush()
            continue
        if _is_code(paragraph):
            current.append(textwrap.dedent(paragraph).strip("\n"))
            continue
        run: list[str] = []
        for line in paragraph.splitlines():
            if line.strip() and _is_code(line.strip()) and _parses("\n".join([*run, line.strip()])):
                run.append(line.strip())
            elif run:
                break
        if run and len(run) < len(paragraph.strip().splitlines()):
            flush()
            current.append("\n".join(run))
        flush()
    flush()
    return [s for s in scripts if _parses(s)]


def prelude_imports(repo_dir: Path, touched: Sequence[str]) -> list[str]:
    """Issue snippets often assume the package is imported (`>>> x = Symbol('x')`, `convert_to(joule, J)`):
    star-import every package and module on the way to the files the candidates touch, deepest first so
    the top-level package's names win where they clash (the runner ignores failures)."""
    modules: set[str] = set()
    for path in touched:
        parts = path.removesuffix(".py").removesuffix("/__init__").split("/") if path.endswith(".py") else []
        for depth in range(1, len(parts) + 1):
            where = repo_dir.joinpath(*parts[:depth])
            module = depth > 1 and where.with_suffix(".py").is_file()  # a top-level setup.py is not imported
            if not (parts[depth - 1].isidentifier() and not parts[depth - 1].startswith("test")
                    and ((where / "__init__.py").is_file() or module)):
                break
            modules.add(".".join(parts[:depth]))
    return [f"from {m} import *" for m in sorted(modules, key=lambda m: (-m.count("."), m))]


def _traceback_steps(text: str) -> list[ProbeStep]:
    return [ProbeStep(code=m.group(2).strip()) for m in _FRAME.finditer(text) if _parses(m.group(2).strip())]


# -- running ---------------------------------------------------------------------------------------

RUNNER = r'''
import ast, contextlib, io, json, signal, sys
PROBES = json.loads(__PROBES__)
PRELUDE = __PRELUDE__

class _Timeout(BaseException):
    pass

def _alarm(signum, frame):
    raise _Timeout()

signal.signal(signal.SIGALRM, _alarm)
__SHELL_RUNNER__

def _run(code, namespace):
    out = io.StringIO()
    try:
        tree = ast.parse(code)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        signal.alarm(__STEP_TIMEOUT__)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compile(tree, "<issue>", "exec"), namespace)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), "<issue>", "eval"), namespace)
                if value is not None:
                    print(repr(value))
        signal.alarm(0)
        return [out.getvalue(), None]
    except _Timeout:
        return [out.getvalue(), "timeout"]
    except BaseException as exc:
        signal.alarm(0)
        return [out.getvalue(), type(exc).__name__ + ": " + str(exc)[:300]]

results = {}
namespace = {"__name__": "__main__"}  # one session: later snippets use names earlier ones defined
for line in PRELUDE:
    try:
        exec(line, namespace)
    except BaseException:
        pass
for probe in PROBES:
    results[probe["id"]] = [_shell(step["code"], step.get("files") or {}) if probe["kind"] == "shell"
                            else _run(step["code"], namespace) for step in probe["steps"]]
sys.stdout.write("\n__MARKER__" + json.dumps(results) + "\n")
'''


def runner_script(probes: Sequence[Probe], prelude: Sequence[str] = (), step_timeout: int = STEP_TIMEOUT_S) -> str:
    return (RUNNER.replace("__PROBES__", repr(json.dumps([p.model_dump() for p in probes])))
            .replace("__SHELL_RUNNER__", SHELL_RUNNER).replace("__PRELUDE__", repr(list(prelude)))
            .replace("__STEP_TIMEOUT__", str(step_timeout))
            .replace("__MARKER__", RESULT_MARKER))


def parse_probe_output(outcome: Outcome) -> dict[str, list[str]] | None:
    """probe id → each step's normalized result; None when the runner did not finish."""
    if outcome.error is not None or outcome.timed_out or RESULT_MARKER not in outcome.output:
        return None
    try:
        raw = json.loads(outcome.output.rsplit(RESULT_MARKER, 1)[1].strip().splitlines()[0])
    except (ValueError, IndexError):
        return None
    return {pid: [normalize_output(out) + (f" {EXCEPTION}{normalize_output(exc)}" if exc else "")
                  for out, exc in steps] for pid, steps in raw.items()}


class ProbeEvidence(BaseModel):
    probes: list[Probe] = Field(default_factory=list)
    steps_stable: int = Field(0, description="Steps whose result on the original was the same in two runs.")
    steps_reproducing: int = Field(0, description="Stable steps that raise, or show the issue's output, on the original.")
    fixes: dict[str, int] = Field(default_factory=dict, description="patch key → steps it fixes.")
    breaks: dict[str, int] = Field(default_factory=dict, description="patch key → steps it makes raise.")
    vectors: dict[str, dict[str, str]] = Field(default_factory=dict, description="patch key → step → result.")
    original_vector: dict[str, str] = Field(default_factory=dict, description="step → result on the original.")
    executions: int = 0
    notes: list[str] = Field(default_factory=list)


def raises(result: str) -> bool:
    return EXCEPTION in result


def _shown_matches(shown: str | None, result: str) -> bool:
    return bool(shown and normalize_output(shown) == result)


def expected_by_issue(result: str, issue: str) -> bool:
    """The issue names this result: its output (4+ characters) or its exception's message (8+) appears in it."""
    text = " ".join(_ADDRESS.sub("0x?", issue).split())
    output, _, exception = result.partition(EXCEPTION)
    output = output.strip()
    if exception:
        _, _, message = exception.partition(": ")
        return len(message) >= 8 and message.strip("'\"") in text
    return len(output) >= 4 and output in text


async def run_probes(executor: CachedJobRunner, probes: Sequence[Probe], patches: Sequence[DistinctPatch], *,
                     prelude: Sequence[str] = (), timeout: float = 120, issue: str = "") -> ProbeEvidence:
    """Run every probe twice on the original and once per patch (one execution each), and score them."""
    evidence = ProbeEvidence(probes=list(probes))
    if not probes:
        evidence.notes.append("the issue holds no runnable code")
        return evidence
    script = runner_script(probes, prelude)
    key = sha256("probes\0" + script)
    command = f'PYTHONPATH="$PWD${{PYTHONPATH:+:$PYTHONPATH}}" python {PROBE_PATH}'
    files = {PROBE_PATH: script}
    jobs = [Job(patch_key="", patch=None, test_key=key, command=command, files=files, runs=[0, 1], timeout=timeout)]
    jobs += [Job(patch_key=p.key, patch=p.candidate.patch, test_key=key, command=command, files=files,
                 timeout=timeout) for p in patches]
    results = await executor.run(jobs)
    evidence.executions = len(jobs) + 1
    first, second = (parse_probe_output(results[("", key, run)]) for run in (0, 1))
    if first is None or second is None:
        evidence.notes.append("the probes did not run on the original")
        return evidence
    steps = [(probe, index, step) for probe in probes for index, step in enumerate(probe.steps)
             if first.get(probe.id, [])[index:index + 1] == second.get(probe.id, [])[index:index + 1]
             and index < len(first.get(probe.id, []))]
    evidence.steps_stable = len(steps)
    evidence.original_vector = {f"{probe.id}.{i}": first[probe.id][i] for probe, i, _ in steps}
    evidence.steps_reproducing = sum(1 for probe, i, step in steps
                                     if raises(first[probe.id][i]) or _shown_matches(step.shown, first[probe.id][i]))
    normalized_issue = " ".join(_DURATION.sub("?s", _ADDRESS.sub("0x?", issue)).split())
    for patch in patches:
        ran = parse_probe_output(results[(patch.key, key, 0)])
        fixes = breaks = 0
        vector: dict[str, str] = {}
        for probe, i, step in steps:
            before = first[probe.id][i]
            after = (ran or {}).get(probe.id, [])
            if i >= len(after):
                continue
            now = after[i]
            vector[f"{probe.id}.{i}"] = now
            if now == before:
                continue
            raised_before, raises_now = raises(before), raises(now)
            if (raised_before and not raises_now) or (_shown_matches(step.shown, before) and not raises_now) \
                    or (issue and expected_by_issue(now, issue)) \
                    or (probe.kind == "shell" and reaches_shown_output(before, now, normalized_issue)):
                fixes += 1
            elif raises_now and not raised_before:
                breaks += 1
        evidence.fixes[patch.key], evidence.breaks[patch.key] = fixes, breaks
        evidence.vectors[patch.key] = vector
    return evidence
