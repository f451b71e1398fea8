"""The install table covers SWE-bench; build plans and eval scripts follow the official harness."""

from __future__ import annotations

import json

import pytest

from patchswarm.swebench.dataset import SweInstance, load_instances
from patchswarm.swebench.scripts import (
    CONDA_ACTIVATE,
    CONSTRAINTS_PATH,
    PIP_FLOOR,
    UNPINNED_PYTEST_CAP,
    WHEELHOUSE,
    adapt_for_local_image,
    compiles_extensions,
    directives,
    make_eval_script,
    patched_files,
    plan_build,
    spec_constraints,
)
from patchswarm.swebench.specs import (
    SpecError,
    SpecTable,
    conda_packages,
    environment_yml_requirements,
    load_spec_table,
    read_environment_yml,
    read_requirements,
)
from tests.conftest import FIXTURES, make_git_repo

# A few real rows per repository, committed (see its README): the suite needs no ../shared.
SHARED_DATA = FIXTURES / "swebench_rows"
FILES = ("swe-bench-lite.dev.jsonl", "swe-bench-lite.test.jsonl", "swe-bench-verified.test.jsonl")
# Published eval scripts with an instance-specific extra line the per-version specs cannot know.
HAND_EDITED = frozenset({"astropy__astropy-8707", "astropy__astropy-8872"})
PYTHON_REPOS = frozenset({
    "astropy/astropy", "django/django", "matplotlib/matplotlib", "marshmallow-code/marshmallow", "mwaskom/seaborn",
    "pallets/flask", "psf/requests", "pvlib/pvlib-python", "pydata/xarray", "pydicom/pydicom",
    "pylint-dev/astroid", "pylint-dev/pylint", "pytest-dev/pytest", "pyvista/pyvista",
    "scikit-learn/scikit-learn", "sphinx-doc/sphinx", "sqlfluff/sqlfluff", "sympy/sympy",
})


@pytest.fixture(scope="module")
def rows() -> list[SweInstance]:
    return [instance for name in FILES for instance in load_instances(SHARED_DATA / name)]


@pytest.fixture(scope="module")
def table() -> SpecTable:
    return load_spec_table()


def test_table_covers_every_repo_and_version_in_the_data(rows, table):
    assert PYTHON_REPOS <= set(table.repos)
    for instance in rows:
        spec = table.spec(instance.repo, instance.version)
        assert spec.python and spec.test_cmd
        assert table.repo(instance.repo).log_parser == instance.log_parser
    assert "build-essential" in table.system_packages
    assert table.repo("django/django").requirements_paths == ["tests/requirements/py3.txt"]


def test_generated_eval_scripts_match_the_published_ones(rows, table):
    mismatched = {i.instance_id for i in rows if make_eval_script(i, table.spec(i.repo, i.version)) != i.eval_script}
    assert mismatched == HAND_EDITED
    assert len(rows) - len(mismatched) > 50


def test_unknown_repo_or_version_is_a_clear_error(table):
    with pytest.raises(SpecError, match="no install spec for repository nobody/nothing"):
        table.spec("nobody/nothing", "1.0")
    with pytest.raises(SpecError, match=r"no install spec for django/django version 0\.0 \(known: .*3\.0"):
        table.spec("django/django", "0.0")


def test_user_table_is_laid_over_the_packaged_one(tmp_path):
    path = FIXTURES / "swebench_calc" / "specs.json"
    table = load_spec_table(path)
    assert table.spec("fixture/calc", "0.1").test_cmd == "pytest -rA"
    assert table.system_packages == []  # the user table set it
    assert "django/django" in table.repos
    only = load_spec_table(path, include_default=False)
    assert set(only.repos) == {"fixture/calc"}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SpecError, match="cannot read spec table"):
        load_spec_table(tmp_path / "bad.json")


def test_requirements_read_from_git_with_includes(tmp_path):
    repo = tmp_path / "r"
    sha = make_git_repo(repo, [{
        "reqs/dev.txt": "# dev\n-r base.txt\npytest>=7\n-e .\n.[test]\ntypes-pkg_resources==0.1\n",
        "reqs/base.txt": "numpy\n-e .\n",
        "ci/environment.yml": "name: t\ndependencies:\n  - python=3.9\n  - scipy=1.5\n  - pip:\n    - pytest\n",
    }])[0]
    assert read_environment_yml(repo, sha, ["environment.yml", "ci/environment.yml"]) == ["scipy==1.5", "pytest"]
    text = read_requirements(repo, sha, ["reqs/missing.txt", "reqs/dev.txt"], [("types-pkg_resources", "types-setuptools")])
    assert [line for line in text.splitlines() if line] == ["numpy", "pytest>=7", "types-setuptools"]
    with pytest.raises(SpecError, match="no requirements file at nope.txt"):
        read_requirements(repo, sha, ["nope.txt"])


def test_conda_specs_become_pip_requirements():
    assert conda_packages("'numpy==1.19.2' scipy=1.5 cython pytest 'pandas<2.0.0' mkl gxx_linux-64") == [
        "numpy==1.19.2", "scipy==1.5", "cython", "pytest", "pandas<2.0.0"]
    assert conda_packages("requirements.txt") == [] and conda_packages("environment.yml") == []
    yml = "name: x\ndependencies:\n  - python=3.10\n  - numpy=1.23=py310h\n  - matplotlib-base\n  - pip\n  - pip:\n    - pytest-xdist\n"
    assert environment_yml_requirements(yml) == ["numpy==1.23", "matplotlib", "pytest-xdist"]
    # xarray's ci environment.yml: conda-forge-only packages and C libraries are left out, iris is renamed.
    xarray = "dependencies:\n  - cdms2\n  - hdf5\n  - iris\n  - h5netcdf\n  - dask-core\n"
    assert environment_yml_requirements(xarray) == ["scitools-iris", "h5netcdf", "dask"]  # dask-core: conda's name


def test_build_plan_splits_layers_and_users(table):
    plan = plan_build(table.spec("matplotlib/matplotlib", "3.5"), system_packages=table.system_packages,
                      build_requires=["setuptools>=64", "setuptools_scm>=7"])
    system, root, instance = ("\n".join(steps) for steps in (plan.system_setup, plan.root_setup, plan.instance_setup))
    # Shared by every environment on one Python: the official base image's packages and the layout.
    assert CONDA_ACTIVATE in system and "ln -sfn /repo /testbed" in system and "build-essential" in system
    assert "imagemagick" not in system  # the spec's own system packages belong to its environment
    # Held to what the 2024 index gave, by marker where only one Python needs it (a constraints file may say so).
    assert "'docutils<0.22' 'numbagg<0.9; python_version < '\"'\"'3.10'\"'\"'' 'xxhash<4'" in system
    assert "apt-get install -y imagemagick" in root and "build-essential" not in root
    assert 'QHULL_BUILD_DIR="/testbed/build"' in instance and "apt-get" not in instance
    assert plan.instance_setup[-2] == "python -m pip install -e ."
    assert plan.instance_setup[-1].startswith(f"python -m pip download -q -d {WHEELHOUSE} 'setuptools>=64'")
    assert plan.env_setup[0] == PIP_FLOOR and any("pip install" in step for step in plan.env_setup[1:])
    quiet = plan_build(table.spec("matplotlib/matplotlib", "3.5"), system_packages=table.system_packages, system=False)
    assert "apt-get" not in "\n".join(quiet.system_setup + quiet.root_setup) and len(quiet.system_setup) == 3
    assert "'setuptools>=40.8.0' wheel" in quiet.instance_setup[-1]  # no pyproject: what pip assumes
    # tox --current-env (Sphinx) gets the .pth that lets its symlinked python see the venv; others do not.
    assert "patchswarm-tox-current-env.pth" in "\n".join(plan_build(table.spec("sphinx-doc/sphinx", "3.4")).root_setup)
    assert "tox-current-env" not in "\n".join(plan_build(table.spec("pytest-dev/pytest", "6.0")).root_setup)
    django = plan_build(table.spec("django/django", "1.7"))
    assert "locale-gen en_US.UTF-8" in "\n".join(django.root_setup)


def test_unpinned_pytest_is_held_below_8_where_the_spec_names_it(table):
    # pydicom 2.1 lists a bare "pytest": pytest 8 would skip its nose-style setup() and fail the gold tests.
    pydicom = plan_build(table.spec("pydicom/pydicom", "2.1"))
    cap = f"printf '%s\\n' '{UNPINNED_PYTEST_CAP}' >> {CONSTRAINTS_PATH}"
    assert cap in pydicom.root_setup
    # The cap is written before any pip install of the layer runs (those are env_setup, after root_setup).
    assert not any(CONSTRAINTS_PATH in step for step in pydicom.env_setup)
    assert spec_constraints(table.spec("pvlib/pvlib-python", "0.8")) == [UNPINNED_PYTEST_CAP]
    conda_bare = table.spec("pydicom/pydicom", "2.1").model_copy(update={"pip_packages": [], "packages": "numpy pytest"})
    assert spec_constraints(conda_bare) == [UNPINNED_PYTEST_CAP]
    # A pin is the spec's own; plugins are not pytest; pytest itself and Sphinx (pytest from the repo's
    # own metadata, `pytest>=8` in Sphinx 8) get no cap that would contradict what they install.
    for repo, version in (("astropy/astropy", "5.1"), ("pydata/xarray", "0.12"), ("pytest-dev/pytest", "8.0"),
                          ("sphinx-doc/sphinx", "8.1"), ("marshmallow-code/marshmallow", "3.0")):
        assert spec_constraints(table.spec(repo, version)) == [], (repo, version)
        assert not any(UNPINNED_PYTEST_CAP in step for step in plan_build(table.spec(repo, version)).root_setup)
    plugins = table.spec("pydicom/pydicom", "2.1").model_copy(update={"pip_packages": ["pytest-cov", "pytest==7.4.0"]})
    assert spec_constraints(plugins) == []


def test_python_headers_only_for_repositories_that_compile_extensions(table):
    assert compiles_extensions(["setup.py", "astropy/convolution/src/convolve.c"])
    assert compiles_extensions(["sklearn/tree/_tree.pyx"])
    # C files as test data or documentation are not built (Sphinx's test roots).
    assert not compiles_extensions(["tests/roots/test-ext-c/main.c", "doc/example.c", "sympy/core/add.py"])
    astropy = plan_build(table.spec("astropy/astropy", "4.3"), extensions=True)
    assert any("apt-get install -y -qq python3-dev" in step for step in astropy.root_setup)
    assert not any("python3-dev" in step for step in plan_build(table.spec("astropy/astropy", "4.3")).root_setup)
    assert not any("python3-dev" in step for step in
                   plan_build(table.spec("astropy/astropy", "4.3"), extensions=True, system=False).root_setup)


def test_local_adaptation_names_head_and_keeps_markers(rows):
    instance = next(i for i in rows if i.repo == "django/django")
    script = adapt_for_local_image(instance.eval_script, instance.base_commit)
    assert instance.base_commit not in script
    assert f"git checkout HEAD {' '.join(patched_files(instance.test_patch))}" in script
    assert ": '>>>>> Start Test Output'" in script and "\ngit show --no-patch\n" in script
    assert script.count("\n") == instance.eval_script.count("\n")
    # Commands work in /repo itself (a reinstall through the /testbed link would register a second path)...
    assert "cd /testbed" not in script and "\ncd /repo\n" in script and "safe.directory /repo" in script
    # ...but the test patch is applied exactly as published.
    odd = instance.eval_script.replace("<<'EOF_114329324912'\n", "<<'EOF_114329324912'\n+see /testbed/x\n", 1)
    assert "+see /testbed/x" in adapt_for_local_image(odd, instance.base_commit)


def test_django_directives_are_modules(rows):
    instance = next(i for i in rows if i.instance_id == "django__django-13220")
    assert directives(instance) == ["test_exceptions.test_validation_error"]
    assert json.loads(instance.harness_row()["FAIL_TO_PASS"])[0].startswith("test_eq ")


def test_sphinx_before_8_gets_the_pygments_of_the_official_images(table):
    # sphinx-10323: Pygments 2.19+ writes other HTML for highlighted code; its PASS_TO_PASS test_linenothreshold
    # passes with 2.18 (the official images') and fails with today's release.
    cap = f"printf '%s\\n' 'Pygments<2.19' 'sphinxcontrib-jsmath<2' >> {CONSTRAINTS_PATH}"
    assert cap in plan_build(table.spec("sphinx-doc/sphinx", "5.0"), repo="sphinx-doc/sphinx", version="5.0").root_setup
    assert spec_constraints(table.spec("sphinx-doc/sphinx", "3.1"), "sphinx-doc/sphinx", "3.1") == [
        "Pygments<2.19", "sphinxcontrib-jsmath<2"]  # sphinx-8474: jsmath 2.0 wants Sphinx 5
    # Sphinx 8 was released against newer Pygments; other repositories and a spec's own pin are left alone.
    assert spec_constraints(table.spec("sphinx-doc/sphinx", "8.1"), "sphinx-doc/sphinx", "8.1") == []
    assert "Pygments<2.19" not in spec_constraints(table.spec("pytest-dev/pytest", "7.0"), "pytest-dev/pytest", "7.0")
    pinned = table.spec("sphinx-doc/sphinx", "5.0").model_copy(update={"pip_packages": ["tox", "pygments==2.12.0"]})
    assert spec_constraints(pinned, "sphinx-doc/sphinx", "5.0") == ["sphinxcontrib-jsmath<2"]
