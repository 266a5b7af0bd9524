"""Nothing lost, nothing leaked, nothing written outside its folder: secrets in storage URLs, names that become
paths, damaged files, runaway sizes (issue 24)."""

import fcntl
import os
import signal
import time
import warnings

import optuna
import pytest

import flowkit.studies.runner.trial as runner_trial
import flowkit.studies.runner.workers as workers
import flowkit.training.compiled_run as compiled_run_module
from flowkit import runs
from flowkit.cli import build_parser, main
from flowkit.settings import ConfigError
from flowkit.studies.runner import (
    backends,
    enqueue_missing,
    failure_of,
    load_optuna_study,
    resolve_run_dir,
    run_study,
    storage,
)
from flowkit.studies.runner.backends import study_dir
from flowkit.studies.study import cell_slug
from tests.helpers import tiny_study

STUDY = """
from flowkit import Study
STUDY = Study(name={name!r}, question="?", agents=("fql",), tasks=("moons",), grid={{"solver": ("euler",)}},
              seeds=(0,), fixed={{"steps": 100, "log_every": 100, "eval_every": 100{extra}}})
"""


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def files_under(folder) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/absolute", "", ".hidden", "a/b"])
def test_a_study_name_that_is_no_slug_is_one_line_before_anything_is_written(name, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    path = work / "mine.py"
    path.write_text(STUDY.format(name=name, extra=""))
    code, _, error = run_cli(["study", "run", str(path), "--runs-dir", str(work / "runs")], capsys)
    assert (code, error.count("\n")) == (2, 1), (code, error)
    assert "cannot name a folder" in error and error.startswith("flowkit: error: "), error
    assert files_under(tmp_path) == ["work", "work/mine.py"], files_under(tmp_path)


def test_a_cell_value_that_would_leave_its_folder_is_refused():
    assert cell_slug({"agent": "fql", "task": "d4rl/v2"}) == "agent=fql__task=d4rl-v2"
    assert cell_slug({"agent": "fql", "task": "../../x\x00y"}) == "agent=fql__task=..-..-x-y", "one folder"
    assert cell_slug({"agent": "fql", "task": "my.npz@Pendulum-v1"}) == "agent=fql__task=my.npz-Pendulum-v1"
    with pytest.raises(ConfigError, match="cannot name a folder"):
        cell_slug({"agent": "fql", "task": "x" * 300})


def test_a_stored_run_folder_outside_the_study_folder_is_refused(tmp_path):
    record = type("Record", (), {"run_dir": "../../elsewhere/seed0"})()
    with pytest.raises(ConfigError, match="lies outside"):
        resolve_run_dir(tmp_path / "runs" / "tiny", record)
    assert resolve_run_dir(tmp_path, type("Record", (), {"run_dir": "runs/a/seed0"})()) == tmp_path / "runs/a/seed0"


SECRET = "s3cret-PW"
SECRET_URL = f"postgresql://me:{SECRET}@127.0.0.1:1/studies"


@pytest.mark.parametrize(
    "argv",
    [
        ["study", "run", "{path}"],
        ["study", "run", "{path}", "--workers", "2"],
        ["study", "status", "{path}"],
        ["study", "list"],
        ["report", "{path}"],
    ],
)
@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_storage_password_is_in_no_output_and_no_file(argv, how, tmp_path, capsys, monkeypatch):
    path = tmp_path / "mine.py"
    path.write_text(STUDY.format(name="mine", extra=""))
    runs_dir = tmp_path / "runs"
    argv = [word.format(path=path) for word in argv] + ["--runs-dir", str(runs_dir)]
    if how == "flag":
        argv += ["--storage", SECRET_URL]
    else:
        monkeypatch.setenv("FLOWKIT_STORAGE", SECRET_URL)
    code, out, error = run_cli(argv, capsys)
    assert code != 0 or argv[1] == "list", (code, out, error)
    assert "cannot connect" in error and "postgresql://me:***@127.0.0.1:1/studies" in error, error
    assert SECRET not in out + error, out + error
    written = [p for p in runs_dir.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert written == [], written


def test_hide_password_covers_urls_inside_messages():
    message = f"OperationalError: storage {SECRET_URL!r} and sqlite:///x.db and postgresql://me@h/db"
    shown = backends.hide_password(message)
    assert SECRET not in shown and "postgresql://me:***@127.0.0.1:1/studies" in shown, shown
    assert shown.endswith("sqlite:///x.db and postgresql://me@h/db"), shown


def test_a_damaged_checkpoint_is_one_line_naming_it_and_is_left_as_it_was(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.npz").write_bytes(b"not a zip file at all")
    argv = ["train", "--task", "moons", "--set", "steps=100", "log_every=100", "eval_every=100"]
    code, _, error = run_cli([*argv, "--run-dir", str(run_dir), "--quiet"], capsys)
    assert (code, error.count("\n")) == (2, 2), (code, error)  # the run folder's line, then the error
    assert f"flowkit: error: checkpoint {run_dir / 'checkpoint.npz'} is damaged" in error, error
    assert "delete it to restart this run" in error, error
    assert files_under(run_dir) == ["checkpoint.npz"], files_under(run_dir)
    assert (run_dir / "checkpoint.npz").read_bytes() == b"not a zip file at all"


def test_a_damaged_result_is_refused_naming_the_file(tmp_path):
    (tmp_path / "result.json").write_text('{"final": {"ste')
    with pytest.raises(ConfigError, match=r"result.json is damaged \(not JSON: .*\); restore it from a copy"):
        runs.load_result(tmp_path)


@pytest.mark.parametrize("content", [b"[1, 2, 3]\n", b"{}\n", b'{"op_code": 0}\n'])
def test_a_journal_of_valid_json_that_is_no_journal_is_one_line_and_unchanged(content, tmp_path, capsys):
    path, journal = tmp_path / "mine.py", tmp_path / "odd.journal"
    path.write_text(STUDY.format(name="mine", extra=""))
    journal.write_bytes(content)
    for command in ("status", "run"):
        argv = ["study", command, str(path), "--storage", str(journal), "--runs-dir", str(tmp_path / "runs")]
        code, _, error = run_cli(argv, capsys)
        assert (code, error.count("\n")) == (2, 1), (code, error)
        assert f"journal {journal}: line 1 is damaged or no Optuna journal record" in error, error
    assert journal.read_bytes() == content
    assert not (tmp_path / "runs").exists()


def test_a_journal_that_cannot_be_written_is_refused_before_the_runs_folder_is_made(tmp_path, capsys):
    path, journal = tmp_path / "mine.py", tmp_path / "dir.journal"
    path.write_text(STUDY.format(name="mine", extra=""))
    journal.mkdir()  # not a file (a read-only file is writable by root, who runs the tests in CI)
    argv = ["study", "run", str(path), "--storage", str(journal), "--runs-dir", str(tmp_path / "runs")]
    code, _, error = run_cli(argv, capsys)
    assert (code, error.count("\n")) == (2, 1), (code, error)
    assert f"flowkit: error: journal {journal} cannot be read and written" in error, error
    assert not (tmp_path / "runs").exists()


def test_a_data_folder_that_cannot_be_written_is_refused_before_generating(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FLOWKIT_DATA_DIR", str(tmp_path))  # main sets it from --data-dir; restored after
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    argv = ["data", "generate", "pointmaze-medium-navigate-v0", "--episodes", "1", "--quiet"]
    code, _, error = run_cli([*argv, "--data-dir", str(blocked / "data")], capsys)
    assert (code, error.count("\n")) == (2, 1), (code, error)
    assert error.startswith(f"flowkit: error: data folder {blocked / 'data'}/."), error
    assert files_under(tmp_path) == ["blocked"]


def test_a_cells_error_is_one_line_with_its_traceback_in_the_run_folders_log(tmp_path, capsys, monkeypatch):
    def broken_train(*args, **kwargs):
        raise TypeError("boom")

    monkeypatch.setattr(runner_trial, "train", broken_train)
    path = tmp_path / "mine.py"
    path.write_text(STUDY.format(name="mine", extra=""))
    code, _, error = run_cli(["study", "run", str(path), "--runs-dir", str(tmp_path / "runs"), "--quiet"], capsys)
    log = tmp_path / "runs/mine/runs/agent=fql__task=moons__solver=euler/seed0/error.log"
    assert (code, error.count("\n")) == (1, 1), (code, error)
    assert (
        error == f"flowkit: error: cell {log.parent.parent.name} failed: TypeError: boom (the traceback is in {log})\n"
    )
    assert "Traceback" in log.read_text() and 'raise TypeError("boom")' in log.read_text(), log.read_text()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("eval_episodes=99999999999999", "eval_episodes: 99999999999999 is out of range; allowed: an integer >= 1 and"),
        ("actor_hidden=100000", "actor_hidden: expected a comma-separated list of positive integers (at most 32, each"),
        ("critic_hidden=" + ",".join(["8"] * 33), "critic_hidden: expected a comma-separated list of positive"),
    ],
)
def test_settings_that_size_memory_have_upper_bounds(setting, message, tmp_path, capsys):
    code, _, error = run_cli(["train", "--task", "moons", "--set", setting, "--run-dir", str(tmp_path / "run")], capsys)
    assert (code, error.count("\n")) == (2, 1) and message in error, (code, error)
    assert not (tmp_path / "run").exists()


def test_evaluation_episodes_that_cannot_fit_are_refused_before_compiling(tmp_path, capsys, monkeypatch):
    """A device of 1 MiB (patched): a minibatch of 16 fits with 8-wide networks, 10,000 episodes do not."""
    monkeypatch.setattr(compiled_run_module, "device_memory_bytes", lambda: ("test device", 2**20))
    argv = ["train", "--task", "moons", "--quiet", "--set", "actor_hidden=8", "critic_hidden=8", "batch_size=16"]
    argv += ["steps=100", "log_every=100", "eval_every=100"]
    code, _, error = run_cli([*argv, "eval_episodes=10000", "--run-dir", str(tmp_path / "run")], capsys)
    assert code == 2 and "flowkit: error: eval_episodes: 10000 needs at least" in error, (code, error)
    assert "for one evaluation and its activations, and the test device has 0.0 GiB" in error, error
    assert not (tmp_path / "run").exists()


def test_repeated_set_options_are_merged_and_checked_for_duplicates(tmp_path, capsys):
    args = build_parser().parse_args(["train", "--set", "steps=20", "actor_hidden=8", "--set", "log_every=10"])
    assert args.set == ["steps=20", "actor_hidden=8", "log_every=10"], args.set
    code, _, error = run_cli(["train", "--set", "steps=100", "--set", "steps=200", "--runs-dir", str(tmp_path)], capsys)
    assert code == 2 and "--set: 'steps' is given twice; allowed: each setting once" in error, error


def test_a_journal_lock_held_by_a_killed_worker_is_free_at_once(tmp_path):
    """A worker killed while appending to the journal (holding its lock): the next append waits for no grace
    period (Optuna's symlink lock made every worker wait 30 s)."""
    journal = tmp_path / "optuna.journal"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JAX warns that a fork of a threaded process may deadlock; the child
        pid = os.fork()  # only takes the lock and dies
    if pid == 0:
        storage.open_storage(str(journal), tmp_path, "held")._backend._lock.acquire()
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    started = time.monotonic()
    optuna.create_study(study_name="after", storage=storage.open_storage(str(journal), tmp_path, "after"))
    waited = time.monotonic() - started
    assert waited < 5, f"the append waited {waited:.1f} s for the dead worker's lock"


def test_a_trial_whose_worker_died_while_claiming_it_is_failed_and_its_cell_enqueued_again(tmp_path):
    """A worker killed between moving a trial to RUNNING and recording itself on it left the trial running for
    good (no process to look up, no heartbeat to miss: the PostgreSQL kill benchmark ended 59/60 with one stuck);
    the next worker holding the study lock fails it and enqueues its cell again."""
    study = tiny_study(grid={"solver": ("euler",)}, seeds=(0,))
    stored = load_optuna_study(study, tmp_path, create=True)
    enqueue_missing(stored, study)
    storage.claim_waiting_trial(stored)  # the first of the claim's two writes; the worker dies before the second
    assert enqueue_missing(stored, study) == 1
    states = [(t.state.name, failure_of(t)["message"] if t.state.name == "FAIL" else None) for t in stored.get_trials()]
    expected = [("FAIL", "its worker died while claiming it"), ("WAITING", None)]
    assert states == expected, f"trials after the next enqueue: {states}, expected {expected}"


def test_workers_claim_trials_under_the_study_lock(tmp_path, monkeypatch):
    """The claim and the worker's record on it happen while the worker holds the study lock, so no other worker
    can take a live claimer's half-written claim for a dead one's (the trial itself is not run here)."""
    study = tiny_study(grid={"solver": ("euler",)}, seeds=(0,))
    record_worker, held = storage.record_worker, []

    def record_while_checking_the_lock(*args, **kwargs):
        descriptor = os.open(study_dir(tmp_path, study.name) / ".lock", os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(False)
        except BlockingIOError:
            held.append(True)
        finally:
            os.close(descriptor)
        record_worker(*args, **kwargs)

    def claimed(*args, **kwargs):
        raise ClaimMadeError

    monkeypatch.setattr(storage, "record_worker", record_while_checking_the_lock)
    monkeypatch.setattr(workers, "run_trial", claimed)
    with pytest.raises(ClaimMadeError):
        run_study(study, tmp_path, progress=False)
    assert held == [True], f"whether the study lock was held at each worker record: {held}"


class ClaimMadeError(Exception):
    """Raised where a worker would start running the trial it claimed."""
