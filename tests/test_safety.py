"""Nothing lost, nothing leaked, nothing written outside its folder: secrets in storage URLs, names that become
paths, damaged files, runaway sizes (issue 24)."""

import pytest

from flowkit.cli import main
from flowkit.settings import ConfigError
from flowkit.studies.runner import resolve_run_dir, storage
from flowkit.studies.study import cell_slug

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
    with pytest.raises(ConfigError, match="cannot name a folder"):
        cell_slug({"agent": "fql", "task": "x\x00y"})


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
    shown = storage.hide_password(message)
    assert SECRET not in shown and "postgresql://me:***@127.0.0.1:1/studies" in shown, shown
    assert shown.endswith("sqlite:///x.db and postgresql://me@h/db"), shown
