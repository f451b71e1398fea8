"""Shell probes: the command lines an issue shows (`pylint -Q`, `$ sphinx-build ...`), run in the repository.

Many reports of command-line tools hold no Python at all: the reproduction is a command and the bug is the
traceback it prints. Such a block is read as commands when its fence says so (```shell, ```console, ...) or
when its lines carry a `$ ` prompt; with a prompt, the lines after a command are the output the issue shows.
Commands that change the environment or reach outside it (pip, git, cd, curl, ...) are not run. At run time
a command whose program is not on PATH records "not found" (not an exception), the same on every patch.
A Python traceback in a command's output counts as the step raising: the reported crash on the original and
its absence on a candidate is a fix, as for code probes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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
    if len(words) > 1 and _VERSION.match(words[1]):  # `pylint 2.14.0-dev0`: a version listing
        return False
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


# Pasted into selection.probes' runner (which defines STEP_TIMEOUT and json): one command in its own
# session, killed as a group at the step timeout so a server or a whole test suite cannot hang the probes.
SHELL_RUNNER = r'''
def _shell(command):
    import os, shutil, subprocess
    if shutil.which(command.split()[0]) is None:
        return ["not found: " + command.split()[0], None]  # proves nothing, and is not a reproduction
    process = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True, text=True, errors="replace")
    try:
        output, _ = process.communicate(timeout=__STEP_TIMEOUT__)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        output, _ = process.communicate()
        return [output[-3000:], "timeout"]
    error = None
    if "Traceback (most recent call last)" in output:
        last = [line for line in output.splitlines() if line.strip()][-1]
        error = "traceback: " + last.strip()[:300]
    return [output[-3000:] + "\n(exit %d)" % process.returncode, error]
'''
