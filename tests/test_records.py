"""Seed records: typed, versioned, and naming run folders that a report finds from any working directory and
from a runs folder moved elsewhere."""

import shutil
from pathlib import Path

import optuna
import pytest

import flowkit.reports.run_facts as run_facts
import flowkit.studies.runner as runner
from flowkit.analysis.gradients import explosions
from flowkit.reports.builder import build_report
from flowkit.studies.runner import records
from tests.helpers import tiny_study


def every_run_flagged(monkeypatch):
    """Flag any gradient norm above 0, so the explosions section lists one flag per run folder the report finds."""
    monkeypatch.setattr(run_facts, "explosions", lambda curve: explosions(curve, threshold=0.0))


def assert_report_has_every_run(report: Path, runs: int) -> None:
    text = report.read_text()
    for figure in ("gradient_norms", "samples"):
        assert f"]({figure}.png)" in text and (report.parent / f"{figure}.png").exists(), figure
    section = text.split("## Gradient explosions flagged")[1].split("\n## ")[0]
    flags = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(flags) == runs, f"one flag per run folder found: {len(flags)} of {runs}: {flags}"


STUDY = tiny_study(seeds=(0,))
SHARED = pytest.mark.xdist_group("records-project")
"""The tests reading the project run on one pytest worker, which runs its study once."""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder in which the tiny study (one seed) ran with the default relative runs folder, `runs`, as
    `flowkit study run` from that folder leaves it."""
    folder = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        runner.run_study(STUDY, Path("runs"), progress=False)
    return folder


@SHARED
@pytest.mark.slow
def test_a_report_from_another_working_directory_finds_every_run(project, tmp_path, monkeypatch):
    """`flowkit study run` with the default relative --runs-dir, then `flowkit report` from elsewhere."""
    monkeypatch.chdir(tmp_path)
    every_run_flagged(monkeypatch)
    report = build_report(STUDY, project / "runs")
    assert_report_has_every_run(report, runs=2)


@SHARED
@pytest.mark.slow
def test_a_report_from_a_moved_runs_folder_finds_every_run(project, tmp_path, monkeypatch):
    """The runs folder moved away (and put back for the other tests afterwards): nothing is left where it ran."""
    moved = tmp_path / "mounted" / "elsewhere"
    moved.parent.mkdir()
    shutil.move(project / "runs", moved)
    try:
        monkeypatch.chdir(moved.parent)
        every_run_flagged(monkeypatch)
        report = build_report(STUDY, moved)
        assert report.parent == moved / STUDY.name / "report"
        assert_report_has_every_run(report, runs=2)
    finally:
        shutil.move(moved, project / "runs")


def record(seed: int = 0) -> records.SeedRecord:
    result = {
        "final": {"step": 100, "reward_mean": 0.25, "consistency": {"tau": [0.0, 1.0], "mean": [0.1, 0.0]}},
        "eval_history": [{"step": 50, "reward_mean": 0.5}, {"step": 100, "reward_mean": 0.25}],
        "cost": {"gflop_per_update": 0.1, "peak_memory_mb": 2.0},
        "timing": {"compile_s": 1.0, "train_s": 2.0, "eval_s": 0.5, "wall_s": 4.0, "ms_per_update": 3.0},
        "nfe_per_solve": 10,
    }
    folder = Path("/somewhere/runs/study")
    return records.seed_record(seed, result, "reward_mean", 2, folder / "runs" / "cell" / f"seed{seed}", folder)


def test_a_record_round_trips_with_its_run_folder_relative_to_the_study_folder():
    made = record()
    assert made.run_dir == "runs/cell/seed0", made.run_dir
    assert made.score == pytest.approx(0.375), f"mean of the last 2 evaluations: {made.score}"
    assert made.timing.other_s == pytest.approx(0.5) and made.timing.seeds_in_program == 1, made.timing
    assert records.from_json(records.to_json(made)) == made
    moved = Path("/mnt/copy/study")
    assert records.resolve_run_dir(moved, made) == moved / "runs" / "cell" / "seed0"


def test_a_record_of_a_newer_schema_is_refused_naming_it():
    newer = {**records.to_json(record()), "schema": records.SCHEMA_VERSION + 1}
    expected = f"schema {records.SCHEMA_VERSION + 1}, newer than this flowkit's: this flowkit reads schema 2"
    with pytest.raises(runner.RecordError, match=expected):
        records.from_json(newer)


def test_a_stored_trial_with_a_newer_record_is_refused_when_read(tmp_path):
    study = tiny_study(grid={"solver": ("euler",)}, seeds=(0,))
    stored = runner.load_optuna_study(study, tmp_path, create=True)
    runner.enqueue_missing(stored, study)
    trial, _ = runner.claim_trial(stored)
    trial.set_user_attr("seeds", {"0": {**records.to_json(record()), "schema": 7}})
    with pytest.raises(runner.RecordError, match="a seed record of schema 7, newer than this flowkit's"):
        runner.progress_of(study, stored)


def test_a_study_stored_before_versioned_records_is_refused_naming_its_schema(tmp_path):
    """A study stored by an earlier flowkit (untyped per-seed dicts, no schema attribute) gives a clear error."""
    study = tiny_study(grid={"solver": ("euler",)}, seeds=(0,))
    storage = runner.open_storage(None, tmp_path, study.name)
    old = optuna.create_study(study_name=study.name, storage=storage, direction="maximize")
    old.set_user_attr(runner.DEFINITION_ATTR, study.definition())
    refusal = r"study 'tiny': the storage holds results of schema 1 \(written before flowkit's records carried"
    with pytest.raises(runner.RecordError, match=refusal):
        runner.load_optuna_study(study, tmp_path)
