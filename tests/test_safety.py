"""Nothing lost, nothing leaked, nothing written outside its folder: secrets in storage URLs, names that become
paths, damaged files, runaway sizes (issue 24)."""

import pytest

from flowkit.cli import main
from flowkit.settings import ConfigError
from flowkit.studies.runner import resolve_run_dir
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
