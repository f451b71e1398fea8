"""Shell scripts for SWE-bench instances: how an environment is set up, and the evaluation script.

The evaluation script follows the official harness's layout (repo at /testbed, `conda activate testbed`,
the test patch applied from a heredoc, the test command between `: '>>>>> Start Test Output'` and
`: '>>>>> End Test Output'` traced by `set -x`). Datasets that carry an `eval_script` column are run
with it as published; this generator only serves rows without one, and is tested to reproduce the
published scripts exactly.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from types import MappingProxyType

from pydantic import BaseModel, Field
from swebench.harness.constants import END_TEST_OUTPUT, NON_TEST_EXTS, START_TEST_OUTPUT
from unidiff import PatchSet

from patchswarm.swebench.dataset import SweInstance
from patchswarm.swebench.specs import SpecError, VersionSpec, conda_packages
from patchswarm.swebench.stand_ins import install_commands, stand_ins_for
from sandbox.sandbox import REPO_DIR

TESTBED = "/testbed"
ENV_NAME = "testbed"
TEST_PATCH_HEREDOC = "EOF_114329324912"
REQUIREMENTS_HEREDOC = "EOF_59812759871"
VENV = "/opt/venv"
CONDA_ACTIVATE = "/opt/miniconda3/bin/activate"
# Sourced by eval scripts as `source /opt/miniconda3/bin/activate && conda activate testbed`: a `conda`
# shell function that enters our venv, so published eval scripts run unchanged.
CONDA_SHIM = f"""# patchswarm: stands in for miniconda; `conda activate <env>` enters the image's venv.
conda() {{
  case "${{1:-}}" in
    activate)
      export CONDA_DEFAULT_ENV="${{2:-base}}" VIRTUAL_ENV={VENV}
      case ":$PATH:" in *":{VENV}/bin:"*) ;; *) export PATH="{VENV}/bin:$PATH" ;; esac ;;
    deactivate) unset CONDA_DEFAULT_ENV ;;
    *) echo "conda (patchswarm shim): only 'activate' and 'deactivate' are supported" >&2; return 1 ;;
  esac
}}
"""
# The venv of Debian's Python 3.9 has pip 20.3, too old for editable installs of pyproject-only packages
# (PEP 660 needs 21.3). The official images' conda pip is 23-24, so older pips are raised to 24.0.
# The conda env also has setuptools and wheel: with both, pip installs a project without pyproject.toml
# in place (`setup.py develop`, a path entry) as the official images do, not through an import hook that
# breaks plugin discovery by directory listing (pylint's checkers).
PIP_FLOOR = ("(python -c 'import sys, pip; sys.exit(tuple(map(int, pip.__version__.split(\".\")[:2])) < (21, 3))' "
             "|| python -m pip install -q 'pip==24.0') && python -m pip install -q 'setuptools==69.5.1' 'wheel==0.43.0'")
# pip resolves against today's index, the official images against the index of their build (2024):
# packages that since dropped what old releases import are held back (docutils 0.22 moved `roman`
# out, which Sphinx 3-4 import). numbagg 0.9 imports typing.TypeAlias (Python 3.10) without saying so in
# its metadata, so on the 3.9 that stands in for a 3.10 spec it installs and fails to import, and
# xarray's rolling_exp tests are skipped. xxhash 4 no longer hashes str, which iris 3 passes it (xarray's
# iris conversion tests).
CONSTRAINTS_PATH = "/etc/patchswarm-constraints.txt"
CONSTRAINTS = ("docutils<0.22", "numbagg<0.9; python_version < '3.10'", "xxhash<4")
# pytest 8 (January 2024) no longer calls nose-style `setup()`/`teardown()` methods, which tests of the
# benchmark's era use (pydicom's TestBadValueRead). A spec that names pytest without a version got the
# pytest of its validation (7.x, 2023), so such environments are held below 8. Specs that pin pytest keep
# their pin, and repositories that bring their own (pytest itself, Sphinx 8's `pytest>=8` extra) are left alone.
UNPINNED_PYTEST_CAP = "pytest<8"
# tox-current-env (tox 4) runs `python` through a symlink it makes in .tox/<env>/bin. A conda env's
# python finds its prefix through any symlink; a venv's does not (pyvenv.cfg is looked for beside the
# link), so the tests would run in the bare system Python ("No module named pytest"). This .pth, in the
# system Python's site directory, gives such an interpreter the venv's packages, as conda would.
CURRENT_ENV_PTH = (
    "import os, sys; (sys.prefix == sys.base_prefix and '/.tox/' in sys.executable"
    f" and os.path.realpath(sys.executable) == os.path.realpath('{VENV}/bin/python')"
    f" and not setattr(sys, 'prefix', '{VENV}') and not setattr(sys, 'exec_prefix', '{VENV}')"
    f" and __import__('site').addsitedir('{VENV}/lib/python%d.%d/site-packages' % sys.version_info[:2]))"
)


def current_env_command() -> str:
    """Root: install CURRENT_ENV_PTH where the venv's base interpreter reads .pth files."""
    return (f"site_dir=$({VENV}/bin/python -c 'import sys; print(sys.base_prefix)')/lib/python3/dist-packages"
            f" && mkdir -p \"$site_dir\" && printf '%s\\n' {shlex.quote(CURRENT_ENV_PTH)}"
            " > \"$site_dir/patchswarm-tox-current-env.pth\"")


# Conda's Python comes with its C headers; Debian's needs python3-dev. Repositories that compile
# extensions at install (astropy's C and Cython sources) get it in their environment layer.
PYTHON_HEADERS = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-dev && rm -rf /var/lib/apt/lists/*"
EXTENSION_SOURCE = re.compile(r"\.(c|cc|cpp|pyx)$")
NOT_BUILT = re.compile(r"(^|/)(tests?|testing|testdata|test_files|docs?)/")


def compiles_extensions(paths: Sequence[str]) -> bool:
    """Whether a repository (its tracked paths) has C, C++ or Cython sources an install builds (test data aside)."""
    return any(EXTENSION_SOURCE.search(path) and not NOT_BUILT.search(path) for path in paths)


# Where an instance image keeps the wheels its build backend needs, so the eval script's reinstall works offline.
WHEELHOUSE = "/opt/patchswarm-wheels"
DEFAULT_BUILD_REQUIRES = ("setuptools>=40.8.0", "wheel")
# Lines of `pre_install` that change the system rather than the repository need root.
ROOT_LINE = re.compile(r"^\s*(sudo\s+)?(apt-get|apt|dpkg|locale-gen|update-locale|ln\s+-s\S*\s+/usr)\b|\s/etc/")


class BuildPlan(BaseModel):
    """Commands that turn a base image into an instance image, split by layer and by who runs them."""

    python: str = Field(description="The Python version the spec asks for.")
    system_setup: list[str] = Field(default_factory=list, description="System layer (shared by every environment on one Python), as root: the official base image's apt packages, shim, /testbed.")
    root_setup: list[str] = Field(description="Env layer, as root before the repo is copied in: the spec's system pre_install lines.")
    env_setup: list[str] = Field(description="Env layer, as the sandbox user: dependencies into the venv.")
    instance_setup: list[str] = Field(description="Instance layer, as the sandbox user: pre_install and install.")


def spec_constraints(spec: VersionSpec, repo: str | None = None, version: str | None = None) -> list[str]:
    """Constraints one environment adds to the shared ones: what the spec left unpinned but its era implies.
    `repo`, `version`: the instance's (repository caps in ERA_CAPS apply to its older versions only)."""
    named = [*spec.pip_packages, *conda_packages(spec.packages)]
    caps = [UNPINNED_PYTEST_CAP] if any(re.fullmatch(r"\s*pytest\s*", name) for name in named) else []
    for era in ERA_CAPS.get(repo or "", ()):
        if version and _major(version) < era.below_major and not any(
                re.match(rf"\s*{re.escape(era.package)}\b", name, re.IGNORECASE) for name in named):
            caps.append(era.cap)
    return caps


class EraCap(BaseModel):
    """A package held to the release the official images (built 2024) had, for a repository's older versions."""

    package: str
    cap: str
    below_major: int = Field(description="Applies to the repository's versions below this major version.")


# Sphinx 3-7, against the index of the official images' build (2024):
# - Pygments 2.19 (January 2025) changed the HTML of highlighted code (whitespace and line-number spans),
#   which Sphinx's own tests compare (sphinx-10323's PASS_TO_PASS test_linenothreshold passes with Pygments
#   2.13-2.18 and fails with 2.19-2.21);
# - sphinxcontrib-jsmath 2.0 requires Sphinx 5, so on Sphinx 3-4 every test loading it fails at setup
#   ("VersionRequirementError: 5.0", sphinx-8474's test_html_math_renderer_*); the official images have 1.0.1.
ERA_CAPS = MappingProxyType({"sphinx-doc/sphinx": (
    EraCap(package="Pygments", cap="Pygments<2.19", below_major=8),
    EraCap(package="sphinxcontrib-jsmath", cap="sphinxcontrib-jsmath<2", below_major=8),
)})


def _major(version: str) -> int:
    head = version.split(".")[0]
    return int(head) if head.isdigit() else 0


def layout_commands() -> list[str]:
    """Root steps giving the image the official layout: /testbed and a `conda activate` that works."""
    return [
        f"mkdir -p {CONDA_ACTIVATE.rsplit('/', 1)[0]} && cat > {CONDA_ACTIVATE} <<'EOF_PATCHSWARM_SHIM'\n"
        f"{CONDA_SHIM}EOF_PATCHSWARM_SHIM",
        f"ln -sfn /repo {TESTBED}",
    ]


def _pip_install(requirements: list[str]) -> str:
    return "python -m pip install " + " ".join(shlex.quote(r) for r in requirements)


def _requirements_file_install(text: str) -> str:
    path = "/tmp/patchswarm-requirements.txt"
    return (f"cat <<'{REQUIREMENTS_HEREDOC}' > {path}\n{text}\n{REQUIREMENTS_HEREDOC}\n"
            f"python -m pip install -r {path} && rm -f {path}")


def wheelhouse_command(build_requires: list[str]) -> str:
    """Download the build backend's wheels into the image (a failure only costs the offline reinstall)."""
    return (f"python -m pip download -q -d {WHEELHOUSE} {' '.join(shlex.quote(r) for r in build_requires)} "
            "|| echo 'patchswarm: build requirements not downloaded: a reinstall at evaluation will fail offline'")


def plan_build(spec: VersionSpec, *, requirements: str | None = None, conda_requirements: Sequence[str] = (),
               system_packages: Sequence[str] = (), install_repo: str | None = None, system: bool = True,
               build_requires: list[str] | None = None, extensions: bool = False,
               repo: str | None = None, version: str | None = None) -> BuildPlan:
    """The build steps for one spec. `requirements`: the requirements text read from the repository;
    `conda_requirements`: the spec's conda packages (or its environment.yml) converted for pip;
    `system=False` leaves out the apt packages and the root-only `pre_install` lines; `extensions`: the
    install compiles C extensions (the Python headers are installed)."""
    shared = [*layout_commands(), f"printf '%s\\n' {' '.join(shlex.quote(c) for c in CONSTRAINTS)} > {CONSTRAINTS_PATH}"]
    if system and system_packages:
        shared.append("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                      + " ".join(system_packages) + " && rm -rf /var/lib/apt/lists/*")
    root = []
    system_lines = [line for line in spec.pre_install if ROOT_LINE.search(line)]
    if system and extensions:
        root.append(PYTHON_HEADERS)
    if system and system_lines:
        root.append("set -e\nexport DEBIAN_FRONTEND=noninteractive\n" + "\n".join(system_lines))
    if "--current-env" in (spec.test_cmd or ""):
        root.append(current_env_command())
    if system and (stand_ins := stand_ins_for(repo or "")):
        root += install_commands(stand_ins)
    if extra := spec_constraints(spec, repo, version):  # before any pip install of this layer reads PIP_CONSTRAINT
        root.append(f"printf '%s\\n' {' '.join(shlex.quote(c) for c in extra)} >> {CONSTRAINTS_PATH}")
    env = [PIP_FLOOR]
    if conda_requirements:
        env.append(_pip_install(list(conda_requirements)))
    if requirements is not None:
        env.append(_requirements_file_install(requirements))
    if spec.pip_packages:
        env.append(_pip_install(spec.pip_packages))
    instance = [install_repo] if install_repo else []
    repo_lines = [line for line in spec.pre_install if not ROOT_LINE.search(line)]
    if repo_lines:  # one shell: later lines use variables set by earlier ones
        instance.append(f"set -e\ncd {REPO_DIR}\n" + "\n".join(repo_lines))
    if spec.install:
        instance.append(spec.install)
    instance.append(wheelhouse_command(list(build_requires or DEFAULT_BUILD_REQUIRES)))
    return BuildPlan(python=spec.python, system_setup=shared, root_setup=root, env_setup=env, instance_setup=instance)


# -- the evaluation script --------------------------------------------------------------------------


def patched_files(patch: str) -> list[str]:
    """Every file a patch writes, repo-relative (what the published eval scripts reset)."""
    return [f.target_file[2:] for f in PatchSet(patch) if f.target_file.startswith("b/")]


def directives(instance: SweInstance) -> list[str]:
    """What the test command is given: the test patch's files (Django wants dotted module names)."""
    files = re.findall(r"diff --git a/.* b/(.*)", instance.test_patch)
    files = [f for f in files if not any(f.endswith(ext) for ext in NON_TEST_EXTS)]
    if instance.repo == "django/django":
        modules = []
        for name in files:
            name = name.removesuffix(".py")
            name = name.removeprefix("tests/")
            modules.append(name.replace("/", "."))
        return modules
    return files


def make_eval_script(instance: SweInstance, spec: VersionSpec) -> str:
    """An evaluation script in the official harness's format (for rows without an `eval_script` column)."""
    if not spec.test_cmd:
        raise SpecError(f"no test command in the spec of {instance.repo} {instance.version}")
    base = instance.base_commit
    reset_tests = f"git checkout {base} {' '.join(patched_files(instance.test_patch))}"
    test_command = " ".join([spec.test_cmd, *directives(instance)])
    lines = [
        f"source {CONDA_ACTIVATE}", f"conda activate {ENV_NAME}", f"cd {TESTBED}", *spec.eval_commands,
        f"git config --global --add safe.directory {TESTBED}", f"cd {TESTBED}", "git status", "git show",
        f"git -c core.fileMode=false diff {base}", f"source {CONDA_ACTIVATE}", f"conda activate {ENV_NAME}",
    ]
    if spec.install:
        lines.append(spec.install)
    lines += [
        reset_tests,
        f"git apply -v - <<'{TEST_PATCH_HEREDOC}'\n{instance.test_patch}\n{TEST_PATCH_HEREDOC}",
        f": '{START_TEST_OUTPUT}'", test_command, f": '{END_TEST_OUTPUT}'", reset_tests,
    ]
    return "\n".join(["#!/bin/bash", "set -uxo pipefail", *lines]) + "\n"


def adapt_for_local_image(script: str, base_commit: str) -> str:
    """The script for one of our images, whose single scrubbed commit stands for `base_commit`.

    Our images carry no upstream history, so the script's `git checkout <base_commit> <test files>`
    (and its informational diff) name HEAD instead, which has the same tree for those files. Its
    informational `git show` would print that whole commit (the entire repository), so it shows
    the header only. Its commands work in /repo itself rather than through the /testbed link: a
    reinstall from /testbed would register the package under a second path, and tests importing it
    twice (pylint's checkers) break.
    """
    out, heredoc = [], None
    for line in script.split("\n"):
        if heredoc is None:
            line = "git show --no-patch" if line == "git show" else re.sub(rf"{TESTBED}(?=/|\s|$)", REPO_DIR, line)
            opened = re.search(r"<<\s*'?(\w+)'?\s*$", line)
            heredoc = opened.group(1) if opened else None
        elif line == heredoc:
            heredoc = None
        out.append(line)
    return "\n".join(out).replace(base_commit, "HEAD")
