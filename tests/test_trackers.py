"""Experiment trackers: TensorBoard event files and an offline W&B run hold the metrics the run wrote to
metrics.jsonl, and a run resumed after a kill continues the same tracker run without repeating a step."""

import glob
import json
import struct
from pathlib import Path

import pytest

from flowkit import runs
from flowkit.run_config import make_run_config
from flowkit.settings import ConfigError
from flowkit.training import train
from flowkit.training.trackers import WANDB_ID, Tracking
from tests.helpers import TINY, killed_after

SETTINGS = {**TINY, "steps": 300, "eval_every": 100, "checkpoint_every": 200, "eval_episodes": 20}


def logged(run_dir: Path) -> dict[str, dict[int, float]]:
    """metrics.jsonl's scalars as "phase/metric" -> {step: value}."""
    curves: dict[str, dict[int, float]] = {}
    for record in runs.read_metrics(run_dir):
        for name, value in record.items():
            if name not in ("phase", "step") and isinstance(value, float):
                curves.setdefault(f"{record['phase']}/{name}", {})[record["step"]] = value
    return curves


def train_killed_then_resumed(run_dir: Path, tracking: Tracking) -> None:
    """Train until the evaluation at update 300 is written (after the checkpoint at 200), die, resume."""
    config = make_run_config("fql", "moons", 0, SETTINGS)
    with killed_after(lambda record: record["step"] == 300 and record["phase"] == "eval"):
        train(config, run_dir, progress=False, tracking=tracking)
    assert runs.load_checkpoint(run_dir).progress["step"] == 200
    train(config, run_dir, progress=False, tracking=tracking)


@pytest.mark.slow
def test_tensorboard_holds_the_runs_scalars_once_per_step_after_a_resume(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_killed_then_resumed(tmp_path, Tracking("tensorboard"))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    expected = logged(tmp_path)
    assert set(events.Tags()["scalars"]) == set(expected), (events.Tags()["scalars"], list(expected))
    for tag, curve in expected.items():
        seen = [(event.step, pytest.approx(event.value, rel=1e-6)) for event in events.Scalars(tag)]
        assert seen == sorted(curve.items()), f"{tag}: TensorBoard {seen}, metrics.jsonl {curve}"


def wandb_records(run_file: Path) -> list:
    """The protobuf records of a W&B transaction log (.wandb): a 7-byte header, then LevelDB-style blocks of
    32 KiB whose chunks (checksum, length, type) make up records."""
    from wandb.proto import wandb_internal_pb2

    data, position, pending, records = run_file.read_bytes(), 7, b"", []
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:  # a block's tail too short for a chunk header is padding
            position += 32768 - position % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.mark.slow
def test_an_offline_wandb_run_holds_the_metrics_and_a_resume_continues_it(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    train_killed_then_resumed(run_dir, Tracking("wandb", project="ode-solver", group="solver=rk4"))
    run_id = (run_dir / WANDB_ID).read_text().strip()
    run_files = sorted(glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb")))
    assert [Path(f).name for f in run_files] == [f"run-{run_id}.wandb"] * 2, "the resumed run continues the same id"
    history: dict[str, dict[int, float]] = {}
    for run_file in run_files:
        for record in wandb_records(Path(run_file)):
            if record.WhichOneof("record_type") == "run":
                assert (record.run.run_id, record.run.project) == (run_id, "ode-solver"), record.run
                assert record.run.display_name == "solver=rk4/seed0", record.run.display_name
            if record.WhichOneof("record_type") == "history":
                values = {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item
                }
                for name, value in values.items():
                    if "/" in name:
                        history.setdefault(name, {})[values["update"]] = value
    expected = logged(run_dir)
    assert set(history) == set(expected), (sorted(history), sorted(expected))
    for tag, curve in expected.items():
        assert history[tag] == pytest.approx(curve, rel=1e-6), (tag, history[tag], curve)
    assert capsys.readouterr().err.count("wandb sync") == 1, "the sync command is printed once"


def test_a_missing_tracker_package_is_one_error_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_wandb)
    monkeypatch.delitem(__import__("sys").modules, "wandb", raising=False)
    with pytest.raises(ConfigError, match=r"--track wandb needs wandb: pip install 'flowkit\[wandb\]'"):
        Tracking("wandb").check()
