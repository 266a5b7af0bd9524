"""The kit installs as one namespace, flowkit, and runs from anywhere: a wheel and an editable install both run
the ode-solver study from an unrelated folder, and a user's own studies/ or reports/ package in that folder
cannot shadow flowkit.studies or flowkit.reports.

The wheel is built once per session from a copy of the repository (the repository itself stays untouched) and
installed with `pip install --target`; the editable install lives in a fresh venv that borrows this
interpreter's packages through a .pth file. The installed copies are run in subprocesses, from a temporary
working folder, with their dependencies taken from the running environment.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import TINY

pytestmark = [pytest.mark.install, pytest.mark.slow, pytest.mark.xdist_group("install")]

REPO = Path(__file__).resolve().parent.parent
SUBPACKAGES = ("studies", "analysis", "reports", "benchmarks")
"""The repository's top-level folders that install as flowkit.<name>."""

WHERE_FLOWKIT_IS = """
import json, flowkit, flowkit.studies, flowkit.studies.study, flowkit.studies.runner, flowkit.reports.builder
print(json.dumps([m.__file__ for m in (flowkit, flowkit.studies, flowkit.studies.study, flowkit.studies.runner,
                                       flowkit.reports.builder)]))
"""
"""Prints the files of flowkit and of the modules a user's studies/ or reports/ package could shadow."""

TINY_ODE_SOLVER = f'''"""The built-in ode-solver study, one seed of a few training steps."""
import dataclasses

from flowkit.studies.ode_solver import STUDY as ODE_SOLVER

STUDY = dataclasses.replace(ODE_SOLVER, seeds=(0,), fixed={TINY!r})
'''
"""A study file that runs the installed ode-solver study's cells (all three solvers) with TINY settings."""

BREAKS = "raise RuntimeError(\"the user's own {} was imported instead of the kit's\")\n"


@dataclasses.dataclass(frozen=True)
class Install:
    """How to run one installed copy: its python, the environment to run it in and the folder flowkit lies in."""

    python: str
    flowkit_cli: Path
    env: dict[str, str]
    package_root: Path

    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess:
        result = subprocess.run(args, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{' '.join(args)} failed in {cwd}:\n{result.stdout}\n{result.stderr}"
        return result

    def flowkit(self, *args: str, cwd: Path) -> str:
        """`flowkit ARGS` through `python -m`, which puts the working folder first on sys.path."""
        return self.run(self.python, "-m", "flowkit.cli", *args, cwd=cwd).stdout

    def module_files(self, cwd: Path) -> list[Path]:
        return [Path(f) for f in json.loads(self.run(self.python, "-c", WHERE_FLOWKIT_IS, cwd=cwd).stdout)]


def pip(*args: str, python: str = sys.executable, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(
        [python, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def build_isolation_flags() -> list[str]:
    """Build in this environment when it has what pyproject's build-system asks for, else let pip fetch it."""
    try:
        import setuptools
        import wheel  # noqa: F401  (setuptools < 70.1 builds wheels with it)
    except ImportError:
        return []
    return ["--no-build-isolation"] if int(setuptools.__version__.split(".")[0]) >= 69 else []


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without PYTHONPATH or a virtualenv's marks, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}


@pytest.fixture(scope="session")
def source_copy(tmp_path_factory) -> Path:
    """The repository's files, without its git data, virtualenvs, build outputs and runs."""
    copy = tmp_path_factory.mktemp("source") / "flowkit"
    ignored = (".git", ".venv", ".nox", "runs", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(*ignored))
    return copy


@pytest.fixture(scope="session")
def wheel_file(source_copy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    pip("wheel", "--no-deps", *build_isolation_flags(), "--wheel-dir", str(out), str(source_copy))
    (wheel,) = out.glob("flowkit-*.whl")
    return wheel


@pytest.fixture(scope="session")
def wheel_install(wheel_file, tmp_path_factory) -> Install:
    """The wheel installed into a bare folder, run by this interpreter with that folder first on sys.path."""
    target = tmp_path_factory.mktemp("wheel-install")
    pip("install", "--no-deps", "--target", str(target), str(wheel_file))
    return Install(sys.executable, target / "bin" / "flowkit", clean_env(PYTHONPATH=str(target)), target)


@pytest.fixture(scope="session")
def editable_install(source_copy, tmp_path_factory) -> Install:
    """`pip install -e` of the source copy into a fresh venv whose other packages are this interpreter's."""
    venv = tmp_path_factory.mktemp("editable-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    borrowed = [p for p in sys.path if p.endswith("-packages") and Path(p).is_dir()]
    Path(site_packages, "borrowed-packages.pth").write_text("\n".join(borrowed) + "\n")
    env = clean_env(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    pip("install", "--no-deps", *build_isolation_flags(), "-e", str(source_copy), python=str(python), env=env)
    return Install(str(python), venv / "bin" / "flowkit", env, source_copy)


@pytest.fixture(params=["wheel", "editable"])
def install(request) -> Install:
    return request.getfixturevalue(f"{request.param}_install")


@pytest.fixture
def own_packages_folder(tmp_path) -> Path:
    """A working folder holding a user's own studies/ and reports/ packages whose modules raise when imported."""
    folder = tmp_path / "project"
    for package, modules in {"studies": ("study", "runner", "ode_solver"), "reports": ("builder", "collect")}.items():
        (folder / package).mkdir(parents=True)
        (folder / package / "__init__.py").write_text(f'"""The user\'s own {package} package."""\n')
        for module in modules:
            (folder / package / f"{module}.py").write_text(BREAKS.format(f"{package}/{module}.py"))
    return folder


def repository_studies() -> list[str]:
    """The study names the repository's studies/ declares: its modules that assign STUDY (module names, dashes
    for underscores)."""
    modules = [p.stem for p in (REPO / "studies").glob("*.py") if "\nSTUDY = " in p.read_text()]
    return sorted(m.removesuffix("_").replace("_", "-") for m in modules)


def assert_tiny_ode_solver_runs(install: Install, cwd: Path, runs_dir: Path) -> None:
    """The installed kit runs the three ode-solver cells from `cwd` and stores every seed's result."""
    study_file = cwd / "tiny_ode_solver.py"
    study_file.write_text(TINY_ODE_SOLVER)
    out = install.flowkit("study", "run", str(study_file), "--quiet", "--runs-dir", str(runs_dir), cwd=cwd)
    assert "3/3 cells complete" in out and "0 failed" in out, f"tiny ode-solver study from {cwd}: {out}"
    results = sorted(p.parent.parent.name for p in (runs_dir / "ode-solver" / "runs").glob("*/seed0/result.json"))
    expected = [f"agent=fql__task=eight-gaussians__solver={s}" for s in ("euler", "midpoint", "rk4")]
    assert results == expected, f"cells with a stored seed-0 result {results}, expected {expected}"


def assert_under(files: list[Path], root: Path) -> None:
    outside = [str(f) for f in files if not f.resolve().is_relative_to(root.resolve())]
    assert not outside, f"modules imported from outside the installed copy {root}: {outside}"


def test_wheel_holds_flowkit_alone_with_every_module_and_template(wheel_file):
    names = zipfile.ZipFile(wheel_file).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"flowkit"}, f"top-level names in {wheel_file.name}: {sorted(top_level)}"
    (top_level_txt,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    declared = zipfile.ZipFile(wheel_file).read(top_level_txt).decode().split()
    assert declared == ["flowkit"], f"top_level.txt declares {declared}"
    installed_as = {"flowkit": "flowkit", **{package: f"flowkit/{package}" for package in SUBPACKAGES}}
    sources = [
        f"{prefix}/{path.relative_to(REPO / folder).as_posix()}"
        for folder, prefix in installed_as.items()
        for path in (REPO / folder).rglob("*.py")
    ]
    templates = [f"flowkit/reports/templates/{p.name}" for p in (REPO / "reports" / "templates").iterdir()]
    missing = sorted(set(sources + templates) - set(names))
    assert templates and not missing, f"{wheel_file.name} lacks {missing}"


def test_wheel_runs_the_ode_solver_study_and_its_report_from_an_unrelated_folder(wheel_install, tmp_path):
    runs_dir = tmp_path / "runs"
    assert_under(wheel_install.module_files(tmp_path), wheel_install.package_root)
    assert_tiny_ode_solver_runs(wheel_install, tmp_path, runs_dir)
    wheel_install.flowkit("report", str(tmp_path / "tiny_ode_solver.py"), "--runs-dir", str(runs_dir), cwd=tmp_path)
    report = (runs_dir / "ode-solver" / "report" / "report.md").read_text()
    assert all(label in report for label in ("Euler", "Midpoint", "RK4")), f"report.md lacks an arm:\n{report}"


def test_editable_install_runs_the_ode_solver_study_from_an_unrelated_folder(editable_install, tmp_path):
    assert_under(editable_install.module_files(tmp_path), editable_install.package_root)
    for name in SUBPACKAGES:
        found = editable_install.run(
            editable_install.python, "-c", f"import importlib.util as u; print(u.find_spec({name!r}))", cwd=tmp_path
        ).stdout.strip()
        assert found == "None", f"the editable install makes a top-level {name!r} importable: {found}"
    assert_tiny_ode_solver_runs(editable_install, tmp_path, tmp_path / "runs")


def test_own_studies_and_reports_packages_do_not_shadow_the_kit(install, own_packages_folder, tmp_path):
    assert_under(install.module_files(own_packages_folder), install.package_root)
    listing = install.flowkit("study", "list", "--runs-dir", str(tmp_path / "runs"), cwd=own_packages_folder)
    listed = [line.split()[0] for line in listing.splitlines()]
    assert listed == repository_studies(), f"study list from {own_packages_folder}: {listed}"


def test_study_catalogue_from_the_wheel_lists_every_built_in_study(wheel_install, tmp_path):
    out = wheel_install.run(str(wheel_install.flowkit_cli), "study", "list", "--runs-dir", str(tmp_path), cwd=tmp_path)
    listed = [line.split()[0] for line in out.stdout.splitlines()]
    assert listed == repository_studies(), f"flowkit study list: {listed}, studies/ declares {repository_studies()}"
    assert all("not started" in line for line in out.stdout.splitlines()), out.stdout
