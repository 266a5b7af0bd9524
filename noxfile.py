"""Sessions: `tests` (every test), `quick` (the fast tier, under two minutes on two cores), `lint`, `study` (the
default study and its report) and `bench`.

Every session runs on the Python 3.11 found on PATH; nox never downloads an interpreter.
"""

import nox

nox.options.default_venv_backend = "venv"
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "tests"]

PYTHON = "3.11"

QUICK = "not slow and not postgres and not chromium and not ogbench and not install"
"""The tests `quick` runs: none that trains for long or starts a database, a browser, OGBench or pip (pyproject's
pytest markers)."""


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite, one pytest worker per core.

    The install tests share one worker (their xdist_group), which builds the wheel once."""
    session.install("-e", ".[test]")
    session.run("pytest", "-n", "auto", "--dist", "loadgroup", *session.posargs)


@nox.session(python=PYTHON)
def quick(session: nox.Session) -> None:
    """The fast tier for the edit-test loop: the tests no marker sets apart as slow or as needing a service."""
    session.install("-e", ".[test]")
    session.run("pytest", "-n", "auto", "-m", QUICK, *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.8")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def study(session: nox.Session) -> None:
    """Run (or resume) a study and write its report: `nox -s study -- NAME` (default ode-solver)."""
    name = session.posargs[0] if session.posargs else "ode-solver"
    session.install("-e", ".")
    session.run("flowkit", "study", "run", name)
    session.run("flowkit", "report", name)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmarks whose figures docs/performance.md#the-benchmarks reports, with its commands."""
    session.install("-e", ".")
    session.run("flowkit", "bench", "step")
    session.run("flowkit", "bench", "methods", "--solvers", "euler,midpoint,rk4")
    session.run("flowkit", "bench", "compile")
    session.run("flowkit", "bench", "seeds", "--seeds", "4", "--set", "log_every=200")
    session.run("python", "-m", "flowkit.benchmarks.trial_overhead")
    data_dir = session.create_tmp()  # a small cube-single dataset: evaluation needs one to load the task
    session.run("flowkit", "data", "generate", "cube-single-play-v0", "--episodes", "5", "--data-dir", data_dir)
    session.run("flowkit", "bench", "eval", "--data-dir", data_dir)
    session.run("python", "-m", "flowkit.benchmarks.runner_load", "--trials", "200", "--workers", "4")
    session.run("python", "-m", "flowkit.benchmarks.pruning")
