"""The `flowkit` command: errors name what was wrong before anything runs; a run and a benchmark work."""

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowkit import runs
from flowkit.cli import build_parser, main
from flowkit.studies import load_study
from flowkit.studies.runner import enqueue_missing, failure_of, load_optuna_study, trial_cell
from flowkit.studies.study import cell_key, cell_slug


def test_bad_setting_exits_before_creating_anything(tmp_path, capsys):
    code = main(["train", "--set", "alpha=-1", "--runs-dir", str(tmp_path)])
    assert code == 2
    assert "flowkit: error: alpha: -1.0 is out of range; allowed: a number >= 0" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--agent", "sac"], "agent: unknown method 'sac'"),
        (["train", "--task", "antmaze"], "task: unknown task 'antmaze'"),
        (["study", "run", "ode-solvers"], "no study named 'ode-solvers'"),
        (["report", "ode-solver"], "study 'ode-solver' has no stored results yet"),
        (["study", "run", "ode-solver", "--storage", "postgresql://x@127.0.0.1:1/y"], "cannot connect"),
        (["bench", "step", "--set", "steps=10"], "steps: a training-loop setting"),
        (["train", "--set", "steps=100", "steps=200"], "--set: 'steps' is given twice; allowed: each setting once"),
        (["study", "run", "ode-solver", "--workers", "abc"], "--workers: expected a positive integer, got 'abc'"),
        (["study", "run", "ode-solver", "--workers", "0"], "--workers: expected a positive integer, got '0'"),
        (["train", "--agnet", "fql"], "unrecognized arguments: --agnet"),
    ],
)
def test_errors_are_one_clear_line(argv, message, tmp_path, capsys):
    try:
        code = main([*argv, "--runs-dir", str(tmp_path)] if argv[0] != "bench" else argv)
    except SystemExit as exit_:  # the command line's own mistakes end in argparse's exit
        code = exit_.code
    error = capsys.readouterr().err
    assert code == 2 and message in error and error.count("\n") == 1, error
    assert error.startswith("flowkit: error: "), error
    assert not (tmp_path / "train").exists(), "nothing was trained"


@pytest.mark.slow
def test_a_diverging_run_is_one_error_line(tmp_path, capsys):
    argv = ["train", "--task", "moons", "--set", "lr=1e30", "steps=100", "log_every=100", "eval_every=100"]
    code = main([*argv, "actor_hidden=16", "critic_hidden=16", "--run-dir", str(tmp_path / "run"), "--quiet"])
    error = capsys.readouterr().err.splitlines()
    assert code == 1 and error[-1].startswith("flowkit: error: the run in "), error
    assert "diverged at update" in error[-1] and "Traceback" not in "\n".join(error), error


def test_an_interrupted_train_prints_the_command_that_resumes_it(tmp_path, capsys, monkeypatch):
    """Without --run-dir the same command would start a new folder: the message names the run's own folder."""

    def interrupted(config, run_dir, **_):
        run_dir.mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr("flowkit.training.train", interrupted)
    code = main(["train", "--task", "moons", "--set", "alpha=3", "--runs-dir", str(tmp_path)])
    error = capsys.readouterr().err.splitlines()[-1]
    assert code == 130 and error.startswith("flowkit: interrupted; resume with: flowkit train "), error
    resume = build_parser().parse_args(shlex.split(error.split("resume with: ")[1])[1:])
    (run_dir,) = (tmp_path / "train").iterdir()
    assert (resume.run_dir, resume.task, resume.set) == (run_dir, "moons", ["alpha=3"]), error


def test_a_run_folder_that_cannot_be_written_is_refused_before_the_models_are_built(tmp_path, capsys, monkeypatch):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    monkeypatch.setattr("flowkit.training.train", lambda *_, **__: pytest.fail("training started"))
    code = main(["train", "--task", "moons", "--run-dir", str(blocked / "run")])
    error = capsys.readouterr().err
    assert (
        code == 2
        and error == f"flowkit: error: run folder {blocked / 'run'} cannot be written ({blocked} is not a folder)\n"
    ), error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["blocked"]


def test_a_batch_that_cannot_fit_is_refused_before_compiling_and_leaves_no_folder(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["train", "--task", "moons", "--set", "batch_size=100000000000", "--run-dir", str(run_dir)])
    error = capsys.readouterr().err.splitlines()[-1]
    assert code == 2 and error.startswith("flowkit: error: batch_size: 100000000000 needs at least "), error
    assert "GiB for one minibatch and its activations" in error and "allowed: a batch that fits" in error, error
    assert not run_dir.exists(), "nothing is left behind"


def test_status_and_list_of_a_study_not_started_write_nothing(tmp_path, capsys):
    assert main(["study", "status", "ode-solver", "--runs-dir", str(tmp_path)]) == 0
    assert main(["study", "list", "--runs-dir", str(tmp_path)]) == 0
    assert "ode-solver           not started" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_train_command_writes_a_run_folder(tmp_path, capsys):
    settings = [
        "actor_hidden=16",
        "critic_hidden=16",
        "batch_size=32",
        "steps=100",
        "log_every=50",
        "eval_every=100",
        "eval_episodes=100",
        "solver=midpoint",
        "flow_steps=4",
    ]
    run_dir = tmp_path / "run"
    assert main(["train", "--task", "swiss-roll", "--set", *settings, "--run-dir", str(run_dir), "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    tradeoff = {"tradeoff_distill_loss", "tradeoff_distance", "tradeoff_q_gain"}  # FQL's one-step policy vs its flow
    probes = {"consistency", "value_bias", *tradeoff}  # the value gaps along the flow, the value against returns
    metrics = {"step", "reward_mean", "reward_in_support", "support", "energy_distance", *probes}
    assert set(printed["final"]) == metrics, "the bandit's metrics and the probes' records"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["agent_config"]["solver"] == "midpoint" and config["train"]["steps"] == 100


@pytest.mark.slow
def test_bench_step_times_flowkit_and_the_reference_on_the_same_math(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = [
        "bench",
        "step",
        "--obs-dim",
        "3",
        "--action-dim",
        "2",
        "--updates-per-call",
        "4",
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--set",
        "actor_hidden=32,32",
        "critic_hidden=32,32",
        "batch_size=64",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    results = json.loads(out.read_text())
    flowkit, reference = results["flowkit"], results["reference"]
    assert abs(flowkit["gflop_per_update"] / reference["gflop_per_update"] - 1) < 0.05, (
        f"same math, so XLA counts nearly the same FLOPs: flowkit {flowkit['gflop_per_update']:.4f} GFLOP, "
        f"reference {reference['gflop_per_update']:.4f} GFLOP"
    )
    assert results["ratio"] > 0 and "flowkit / reference" in capsys.readouterr().out


GOOD_STUDY = """
from flowkit import Study
STUDY = Study(name="mine", question="?", agents=("fql",), tasks=("moons",), grid={{"solver": ("euler", "rk4")}},
              seeds=(0,), fixed={{"steps": 100, "log_every": 100, "eval_every": 100, {extra}}})
"""


@pytest.mark.parametrize(
    ("study_text", "storage", "message"),
    [
        (
            "STUDY = Study(",
            None,
            "study file {path} failed to load: SyntaxError at {path}:1: '(' was never closed: STUDY = Study(",
        ),
        (
            "import math\nSTUDY = math.sqrt(-1)",
            None,
            "failed to load: ValueError at {path}:2: math domain error: STUDY = math.sqrt(-1)",
        ),
        ("X = 1", None, "study file {path} must define STUDY = Study(...)"),
        (GOOD_STUDY.format(extra="").replace('"fql"', '"sac"'), None, "agent: unknown method 'sac'"),
        (GOOD_STUDY.format(extra="").replace('"moons"', '"antmaze"'), None, "task: unknown task 'antmaze'"),
        (GOOD_STUDY.format(extra="").replace('"rk4"', '"rk5"'), None, "solver: 'rk5' is not allowed"),
        (GOOD_STUDY.format(extra='"alhpa": 3'), None, "setting 'alhpa' belongs to none of the study's methods"),
        (GOOD_STUDY.format(extra=""), "postgresql://x@127.0.0.1:1/y", "cannot connect"),
    ],
)
def test_bad_input_leaves_the_stored_study_unchanged(study_text, storage, message, tmp_path, capsys):
    """A study already stored in a journal; a run with each bad input fails with one line and changes no byte."""
    journal = tmp_path / "optuna.journal"
    good = tmp_path / "good.py"
    good.write_text(GOOD_STUDY.format(extra=""))
    study = load_study(str(good))
    enqueue_missing(load_optuna_study(study, tmp_path, str(journal), create=True), study)
    before = journal.read_bytes()
    path = tmp_path / "mine.py"
    path.write_text(study_text)
    code = main(["study", "run", str(path), "--storage", storage or str(journal), "--runs-dir", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == 2 and message.format(path=path) in error and error.count("\n") == 1, error
    assert journal.read_bytes() == before


PAIR_STUDY = """
from flowkit import Study
STUDY = Study(name="pair", question="?", agents=("fql",), tasks=("moons",), grid={"solver": ("euler",)},
              seeds=(0, 1), fixed={"actor_hidden": (16,), "critic_hidden": (16,), "batch_size": 32, "steps": 100,
                                   "log_every": 50, "eval_every": 100, "eval_episodes": 100})
"""


@pytest.mark.slow
def test_study_seeds_run_as_one_program_and_status_shows_where_the_time_went(tmp_path, capsys):
    path = tmp_path / "pair.py"
    path.write_text(PAIR_STUDY)
    assert main(["study", "run", str(path), "--vectorize-seeds", "--quiet", "--runs-dir", str(tmp_path)]) == 0
    results = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("pair/runs/*/seed*/result.json"))]
    assert [r["config"]["seed"] for r in results] == [0, 1]
    assert {r["timing"]["seeds_in_program"] for r in results} == {2}
    capsys.readouterr()
    assert main(["study", "status", str(path), "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1/1 cells complete" in out and "2/2 runs done" in out
    assert re.search(r"min: compile \d+\.\d%, train \d+\.\d%, eval \d+\.\d%, other \d+\.\d%", out), out


TINY_RUN = ["actor_hidden=16", "critic_hidden=16", "batch_size=32", "steps=100", "log_every=50", "eval_every=100"]


@pytest.mark.slow
def test_bench_seeds_and_bench_compile_report_their_figures(tmp_path, capsys):
    """Figures only (timings are never asserted): seeds in one program against one program per seed, and a
    trial's compile time with a cold and a warm compilation cache, the cache having been filled."""
    seeds_json, compile_json = tmp_path / "seeds.json", tmp_path / "compile.json"
    argv = ["--seeds", "2", "--iterations", "1", "--warmup", "1", "--json", str(seeds_json), "--set", *TINY_RUN]
    assert main(["bench", "seeds", *argv]) == 0
    seeds = json.loads(seeds_json.read_text())
    assert seeds["seeds"] == 2 and seeds["speedup"] > 0 and "speed-up of one program" in capsys.readouterr().out
    assert main(["bench", "compile", "--json", str(compile_json), "--set", *TINY_RUN]) == 0
    figures = json.loads(compile_json.read_text())
    assert figures["cache_mb"] > 0 and figures["cold_s"] > 0 and figures["fresh_process_ratio"] > 0
    assert "next trial, same process" in capsys.readouterr().out


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_runs_folder_that_cannot_be_written_is_one_line_and_leaves_no_journal(workers, tmp_path, capsys):
    """A runs folder that cannot be made (a file is in the way; a read-only folder does not stop root): one
    error line before anything is built, and the journal given with --storage is not created empty."""
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    path, journal = tmp_path / "mine.py", tmp_path / "other.journal"
    path.write_text(GOOD_STUDY.format(extra=""))
    argv = ["study", "run", str(path), "--runs-dir", str(blocked / "runs"), "--storage", str(journal)]
    code = main([*argv, "--workers", workers])
    error = capsys.readouterr().err
    expected = f"flowkit: error: study folder {blocked / 'runs' / 'mine'} cannot be written"
    assert (code, error.count("\n")) == (2, 1) and error.startswith(expected), (code, error)
    assert not journal.exists(), "no empty journal left behind"


def test_hints_for_a_study_kept_in_a_file_name_its_path_and_its_name_setting(tmp_path, capsys):
    path = tmp_path / "mine.py"
    path.write_text(GOOD_STUDY.format(extra=""))
    assert main(["report", str(path), "--runs-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"run `flowkit study run {path}`" in error, error
    journal = tmp_path / "mine.journal"
    study = load_study(str(path))
    enqueue_missing(load_optuna_study(study, tmp_path, str(journal), create=True), study)
    path.write_text(GOOD_STUDY.format(extra="").replace("seeds=(0,)", "seeds=(0, 1)"))
    assert main(["study", "run", str(path), "--runs-dir", str(tmp_path), "--storage", str(journal)]) == 2
    error = capsys.readouterr().err
    assert "give the study another name (its name= in the study file)" in error, error


CTRL_C_STUDY = """
from flowkit import Study
STUDY = Study(name="ctrlc", question="?", agents=("fql",), tasks=("moons",), grid={"solver": ("euler", "midpoint")},
              seeds=(0,), fixed={"actor_hidden": (16,), "critic_hidden": (16,), "batch_size": 32, "flow_steps": 2,
                                 "steps": 30000, "log_every": 500, "eval_every": 30000, "eval_episodes": 20,
                                 "checkpoint_every": 2500})
"""


@pytest.mark.slow
@pytest.mark.parametrize("signalled", ["SIGINT to the group", "SIGTERM to the command"])
def test_ctrl_c_of_a_study_with_two_workers_is_one_line_and_the_same_command_resumes_it(tmp_path, signalled):
    """SIGINT while both workers train, sent as Ctrl-C sends it (to the whole process group), or SIGTERM to the
    command alone (kill PID; SIGINT to it alone is tested in test_workers.py): no traceback, one
    `flowkit: interrupted` line, exit 130, both trials stored as interrupted; the same command then completes
    the study."""
    path = tmp_path / "ctrlc.py"
    path.write_text(CTRL_C_STUDY)
    command = [Path(sys.executable).with_name("flowkit"), "study", "run", path, "--workers", "2", "--quiet"]
    command += ["--runs-dir", tmp_path]
    study = load_study(str(path))
    run_dirs = [tmp_path / "ctrlc" / "runs" / cell_slug(cell) / "seed0" for cell in study.cells()]

    def training(run_dir):
        metrics = run_dir / runs.METRICS
        return metrics.exists() and '"phase": "train"' in metrics.read_text()

    def both_in_their_runs():
        """Both workers' runs started (their config.json written), one of them training."""
        started = all((run_dir / runs.CONFIG).exists() for run_dir in run_dirs)
        return started and any(training(run_dir) for run_dir in run_dirs)

    interrupted = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not both_in_their_runs():
            assert time.monotonic() < deadline and interrupted.poll() is None, "both workers started their runs"
            time.sleep(0.05)
        if signalled == "SIGINT to the group":
            os.killpg(interrupted.pid, signal.SIGINT)
        else:
            os.kill(interrupted.pid, signal.SIGTERM)
        _, error = interrupted.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(interrupted.pid, signal.SIGKILL)
    said = [line for line in error.splitlines() if line.startswith("flowkit: interrupted")]
    assert "Traceback" not in error and len(said) == 1, f"Ctrl-C printed {len(said)} interrupted lines:\n{error}"
    assert interrupted.returncode == 130, f"exit code {interrupted.returncode}, printed:\n{error}"
    assert not any((run_dir / runs.RESULT).exists() for run_dir in run_dirs), "Ctrl-C came before a run completed"

    kinds = [failure_of(t)["kind"] for t in load_optuna_study(study, tmp_path).get_trials()]
    assert kinds == ["interrupted", "interrupted"], f"the interrupted trials were stored as {kinds}"

    resumed = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    assert resumed.returncode == 0, f"the same command again exited {resumed.returncode}:\n{resumed.stderr}"
    trials = load_optuna_study(study, tmp_path).get_trials()
    complete = sorted(trial_cell(t) for t in trials if t.state.name == "COMPLETE")
    expected = sorted(cell_key(cell) for cell in study.cells())
    assert complete == expected, f"complete trials' cells {complete}, expected each of {expected} once"
    assert all((run_dir / runs.RESULT).exists() for run_dir in run_dirs), [str(d) for d in run_dirs]
