"""`flowkit report --out`: the report never deletes or displaces anything the kit did not write."""

import json

import pytest

from flowkit.cli import main
from flowkit.reports.output import MANIFEST, check_out_dir, publish, staging_folder
from flowkit.settings import ConfigError


def build(out_dir, study="ode-solver", files=("report.md", "figure.png"), text="new"):
    """What build_report does around its rendering: check, stage, publish."""
    check_out_dir(out_dir, study)
    staging = staging_folder(out_dir)
    for name in files:
        (staging / name).write_text(text)
    publish(staging, out_dir, study)


def test_a_users_files_in_the_folder_are_refused_before_anything_is_written(tmp_path):
    userdir = tmp_path / "userdir"
    userdir.mkdir()
    (userdir / "notes.txt").write_text("precious")
    with pytest.raises(ConfigError, match="did not write"):
        build(userdir)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["notes.txt", "userdir"], list(tmp_path.rglob("*"))
    assert (userdir / "notes.txt").read_text() == "precious"


def test_an_existing_file_is_refused_and_left_in_place(tmp_path):
    target = tmp_path / "report"
    target.write_text("precious")
    with pytest.raises(ConfigError, match="is not a folder"):
        build(target)
    assert target.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["report"], list(tmp_path.iterdir())


def test_an_empty_folder_receives_the_report(tmp_path):
    build(tmp_path / "out")  # new
    empty = tmp_path / "empty"
    empty.mkdir()
    build(empty)
    assert sorted(p.name for p in empty.iterdir()) == [MANIFEST, "figure.png", "report.md"]


def test_a_kit_folder_is_replaced_whole_and_its_stale_files_go(tmp_path):
    out = tmp_path / "report"
    build(out, files=("report.md", "old.png"), text="old")
    build(out, files=("report.md", "figure.png"))
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "figure.png", "report.md"]
    assert (out / "report.md").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"], "no staging or replaced folder left behind"


def test_files_a_user_added_beside_an_earlier_report_are_kept(tmp_path):
    out = tmp_path / "report"
    build(out, files=("report.md", "old.png"), text="old")
    (out / "notes.txt").write_text("precious")
    build(out, files=("report.md", "figure.png"))
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "figure.png", "notes.txt", "report.md"]
    assert (out / "notes.txt").read_text() == "precious"
    assert json.loads((out / MANIFEST).read_text())["files"] == ["figure.png", "report.md"]


def test_another_studys_report_is_not_overwritten(tmp_path):
    out = tmp_path / "report"
    build(out, study="alpha", text="alpha's")
    with pytest.raises(ConfigError, match="'alpha', not of 'ode-solver'"):
        build(out, study="ode-solver")
    assert (out / "report.md").read_text() == "alpha's"


def test_a_manifest_naming_paths_outside_its_folder_is_not_trusted(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (tmp_path / "keep.txt").write_text("precious")
    (out / MANIFEST).write_text(json.dumps({"study": "ode-solver", "files": ["../keep.txt"]}))
    with pytest.raises(ConfigError, match="did not write"):
        build(out)
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_the_command_says_one_line_and_keeps_the_users_file(tmp_path, capsys):
    userdir = tmp_path / "userdir"
    userdir.mkdir()
    (userdir / "notes.txt").write_text("precious")
    code = main(["report", "ode-solver", "--runs-dir", str(tmp_path / "runs"), "--out", str(userdir)])
    captured = capsys.readouterr()
    assert code == 2, (code, captured)
    assert captured.err.strip().splitlines() == [
        f"flowkit: error: report --out {userdir}: the folder holds files the kit did not write; give a new or "
        "empty folder, or one holding an earlier report of this study"
    ], captured.err
    assert (userdir / "notes.txt").read_text() == "precious"
