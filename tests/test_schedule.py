"""When a run evaluates (eval_every from eval_from on, the switch and the end), and stored studies and runs that
predate a setting still continue (the setting counts at its default)."""

import json

from flowkit import runs
from flowkit.run_config import make_run_config
from flowkit.settings import TrainConfig
from flowkit.studies.runner import load_optuna_study
from flowkit.studies.runner.storage import DEFINITION_ATTR, _storage_of
from flowkit.studies.runner.trial import reusable_result
from flowkit.training import train
from tests.helpers import tiny_study


def evaluated(schedule: TrainConfig) -> list[int]:
    return [
        step
        for step in range(schedule.log_every, schedule.total_steps + 1, schedule.log_every)
        if schedule.evaluates_at(step)
    ]


def test_evaluations_start_at_eval_from_and_keep_the_switch_and_the_end():
    offline = TrainConfig(steps=700, log_every=100, eval_every=200, eval_from=300)
    assert evaluated(offline) == [400, 600, 700], evaluated(offline)
    online = TrainConfig(steps=700, online_steps=400, log_every=100, eval_every=200, eval_from=900)
    assert evaluated(online) == [700, 1000, 1100], evaluated(online)
    assert evaluated(TrainConfig(steps=400, log_every=100, eval_every=200)) == [200, 400], "eval_from 0: as before"


def test_a_run_evaluates_only_from_eval_from(tmp_path):
    config = make_run_config("flow-bc", "moons", 0, {"actor_hidden": (8,), "batch_size": 16, "steps": 30,
                             "log_every": 5, "eval_every": 5, "eval_from": 20, "eval_episodes": 4})  # fmt: skip
    train(config, tmp_path, progress=False)
    lines = (tmp_path / runs.METRICS).read_text().splitlines()
    steps = [record["step"] for record in map(json.loads, lines) if record.get("phase") == "eval"]
    assert steps == [20, 25, 30], f"evaluated at {steps}, expected 20, 25 and 30"


def without_eval_from(config: dict) -> dict:
    """Settings as a flowkit before eval_from stored them."""
    return {**config, "train": {k: v for k, v in config["train"].items() if k != "eval_from"}}


def test_a_study_stored_before_a_setting_was_added_continues(tmp_path):
    study = tiny_study(grid={"solver": ("euler",)}, seeds=(0,))
    stored = load_optuna_study(study, tmp_path, create=True)
    definition = stored.user_attrs[DEFINITION_ATTR]
    older = {**definition, "runs": {key: without_eval_from(config) for key, config in definition["runs"].items()}}
    _storage_of(stored).set_study_user_attr(stored._study_id, DEFINITION_ATTR, older)
    load_optuna_study(study, tmp_path)  # raised StorageError ("changed: runs") before settings were upgraded


def test_a_result_stored_before_a_setting_was_added_is_reused(tmp_path):
    config = make_run_config("fql", "moons", 0, {"steps": 100, "log_every": 100})
    result = {"config": without_eval_from(config.to_dict()), "score": 0.5}
    (tmp_path / runs.RESULT).write_text(json.dumps(result))
    assert reusable_result(config, tmp_path) == result
