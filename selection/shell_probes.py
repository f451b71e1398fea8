"""Shell probes: the command lines an issue shows (`pylint -Q`, `$ sphinx-build ...`), run in the repository.

Many reports of command-line tools hold no Python at all: the reproduction is a command and the bug is the
traceback it prints. Such a block is read as commands when its fence says so (```shell, ```console, ...) or
when its lines carry a `$ ` prompt; with a prompt, the lines after a command are the output the issue shows.
Commands that change the environment or reach outside it (pip, git, cd, curl, ...) are not run. At run time
a command whose program is not on PATH records "not found" (not an exception), the same on every patch.
A Python traceback in a command's output counts as the step raising: the reported crash on the original and
its absence on a candidate is a fix, as for code probes. So is a candidate's last line of output (pytest's
`1 xfailed in 0.07s`, durations masked) that the issue shows and the original's is not (`reaches_shown_output`).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence

EXCEPTION = "!raises "  # as selection.probes joins a step's output and its exception

SHELL_TAGS = frozenset({"sh", "bash", "shell", "console", "shell-session", "zsh", "shellsession", "terminal"})
# Installing, version control, moving around or fetching: not a reproduction, and not safe to repeat.
NOT_RUN = frozenset({
    "pip", "pip3", "conda", "mamba", "git", "cd", "sudo", "apt", "apt-get", "brew", "rm", "mv", "cp", "curl",
    "wget", "docker", "export", "source", "virtualenv", "poetry", "pipenv", "tox", "nox", "make", "ln", "chmod",
    "chown", "kill", "ssh", "open", "vim", "nano", "exit", "set", "unset", "alias", "which", "ls", "cat",
})
MAX_BARE_COMMANDS = 4  # an untagged-prompt block longer than this is output, not a few commands

_PROMPT = re.compile(r"^\s*(?:\([\w.-]+\)\s*)?[$%]\s+(\S.*)$")  # `$ cmd`, `(venv) $ cmd`, `% cmd`
_COMMAND = re.compile(r"^[A-Za-z][\w.+-]*$")
_VERSION = re.compile(r"^v?\d+(\.\d+)+")


def _runnable(command: str) -> bool:
    words = command.split()
    if not words or not _COMMAND.match(words[0]) or words[0] in NOT_RUN:
        return False
    if len(words) > 1 and (_VERSION.match(words[1]) or words[1:] in (["--version"], ["-V"])):
        return False  # `pylint 2.14.0-dev0`, `python --version`: a version listing or query
    # `python -m pip install ...` and `python setup.py develop` change the environment too.
    return not re.match(r"python[\d.]*\s+(-m\s+(pip|venv)\b|setup\.py\b)", command)


def is_shell_block(tag: str, lines: Sequence[str]) -> bool:
    """A fenced block to be read as commands: a shell tag, or a `$ ` prompt on its first non-empty line."""
    first = next((line for line in lines if line.strip()), "")
    return tag.strip().lower() in SHELL_TAGS or bool(_PROMPT.match(first))


def shell_commands(lines: Sequence[str]) -> list[tuple[str, str | None]]:
    """(command, output the issue shows after it) for each command of a shell block worth running."""
    body = [line for line in lines if line.strip()]
    if any(_PROMPT.match(line) for line in body):
        steps: list[tuple[str, list[str]]] = []
        for line in body:
            prompt = _PROMPT.match(line)
            if prompt:
                steps.append((prompt.group(1).strip(), []))
            elif steps:
                steps[-1][1].append(line.strip())
        found = [(command, "\n".join(shown) or None) for command, shown in steps]
    elif len(body) <= MAX_BARE_COMMANDS and all(_runnable(line.strip()) or line.split()[0] in NOT_RUN
                                                 for line in body):
        found = [(line.strip(), None) for line in body]
    else:  # a shell-tagged block of output (`*** Module ...`, a traceback): nothing to run
        return []
    return [(command, shown) for command, shown in found if _runnable(command)]


_LAST_LINE = re.compile(r"\(last line: (.*?)\)\(exit -?\d+\)$")


def last_line(result: str) -> str | None:
    """A shell step's last line of output, as the runner records it (decorations like pytest's `===` off)."""
    found = _LAST_LINE.search(result.partition(EXCEPTION)[0].strip())
    text = found.group(1).strip(" =-*!") if found else ""
    return text if len(text) >= 8 else None


def reaches_shown_output(before: str, now: str, issue: str) -> bool:
    """The candidate ends with a line the issue shows (the expected run, `1 skipped`) and the original does not."""
    line, was = last_line(now), last_line(before)
    return line is not None and line != was and line in issue and (was is None or was not in issue)


_FILE_NAME = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.(?:py|toml|cfg|ini|rst|txt))\b")


class IssueFiles:
    """The files an issue shows, so that a command naming one (`pytest test_foo.py`) runs with it.

    A fenced block is the file the text just before it names (`test_foo.py:`, "in `setup.cfg`") or its
    first line's comment names (`# content of test_foo.py`); a command naming a `.py` file no block is
    named after gets the last Python block before it (the issue's "minimal test" then "run pytest on it").
    """

    def __init__(self) -> None:
        self.named: dict[str, str] = {}
        self.last_python: str | None = None

    def add(self, before: str, block: str, *, is_python: bool) -> None:
        text = textwrap.dedent(block).strip("\n") + "\n"
        lead = before.rstrip().splitlines()[-1:] if before.strip() else []
        first = text.splitlines()[0] if text.strip() else ""
        names = _FILE_NAME.findall(first if first.lstrip().startswith("#") else "") or \
            _FILE_NAME.findall(lead[0] if lead else "")
        if names:
            self.named[names[-1]] = text
        if is_python:
            self.last_python = text

    def named_by(self, command: str) -> dict[str, str]:
        files = {}
        for name in _FILE_NAME.findall(command):
            if name in self.named:
                files[name] = self.named[name]
            elif name.endswith(".py") and self.last_python is not None and "/" not in name:
                files[name] = self.last_python
        return files


# Pasted into selection.probes' runner (which defines STEP_TIMEOUT and json): one command in its own
# session, killed as a group at the step timeout so a server or a whole test suite cannot hang the probes.
SHELL_RUNNER = r'''
_shell_steps = [0]

def _shell(command, files):
    import os, shutil, subprocess
    if shutil.which(command.split()[0]) is None:
        return ["not found: " + command.split()[0], None]  # proves nothing, and is not a reproduction
    cwd = None
    if files:  # a fixed folder per step: its path is in pytest's output, and must not differ run to run
        _shell_steps[0] += 1
        cwd = "/tmp/patchswarm-shell-%d" % _shell_steps[0]
        shutil.rmtree(cwd, ignore_errors=True)
        for name, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(cwd, name)), exist_ok=True)
            with open(os.path.join(cwd, name), "w") as handle:
                handle.write(text)
    process = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd,
                               stdin=subprocess.DEVNULL, start_new_session=True, text=True, errors="replace")
    try:
        output, _ = process.communicate(timeout=__STEP_TIMEOUT__)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        output, _ = process.communicate()
        return [output[-3000:], "timeout"]
    lines = [line for line in output.splitlines() if line.strip()] or [""]
    error = "traceback: " + lines[-1].strip()[:300] if "Traceback (most recent call last)" in output else None
    return [output[-3000:] + "\n(last line: %s)(exit %d)" % (lines[-1].strip()[:300], process.returncode), error]
'''
