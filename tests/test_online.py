"""Online fine-tuning after offline training (flowkit/training/online.py), on the bandits as one-step environments."""

from pathlib import Path

import jax
import numpy as np
import pytest

from flowkit import runs
from flowkit.run_config import make_run_config
from flowkit.settings import ConfigError
from flowkit.tasks import load_task
from flowkit.training import train
from flowkit.training.compiled_run import CompiledRun
from flowkit.training.online import BUFFER, OnlinePhase, sample_rows
from flowkit.training.seed_run import SeedRun
from tests.helpers import TINY, killed_after

ONLINE = {**TINY, "steps": 50, "online_steps": 100, "log_every": 25, "eval_every": 50, "checkpoint_every": 50}
"""50 offline updates, then 100 environment steps with one update each."""


def online_config(agent: str = "fql", **overrides):
    return make_run_config(agent, "moons", 0, {**ONLINE, **overrides})


@pytest.mark.slow
def test_the_buffer_starts_as_the_dataset_grows_by_each_step_and_minibatches_cover_both(tmp_path: Path):
    config = online_config()
    compiled = CompiledRun.create(config)
    dataset_size = compiled.task.dataset.rewards.shape[0]
    run, (state, key) = SeedRun.start(compiled.agent, config, tmp_path, None)
    phase = OnlinePhase(compiled, run)
    assert phase.size == dataset_size and phase.buffer.rewards.shape[0] == dataset_size + 100, phase.size
    np.testing.assert_array_equal(phase.buffer.actions[:dataset_size], compiled.task.dataset.actions)
    for step in range(51, 91):
        state, key, _ = phase.env_step(state, key, step)
    assert phase.size == dataset_size + 40 and phase.episodes.count == 40, (phase.size, phase.episodes.count)
    online = np.asarray(phase.buffer.actions[dataset_size : dataset_size + 40])
    assert np.all(np.abs(online) <= 1) and len(np.unique(online, axis=0)) == 40, "each step's own action is stored"
    assert np.all(np.asarray(phase.buffer.masks[dataset_size : dataset_size + 40]) == 0), "one-step episodes end"
    assert not np.any(np.asarray(phase.buffer.actions[dataset_size + 40 :])), "rows past the size stay empty"
    batch = jax.jit(sample_rows, static_argnums=3)(phase.buffer, phase.size, jax.random.PRNGKey(2), 50_000)
    from_online = float(np.mean(np.isin(np.asarray(batch.actions[:, 0]), online[:, 0])))
    assert abs(from_online - 40 / phase.size) < 0.002 and from_online > 0, (from_online, 40 / phase.size)
    assert not np.any(np.all(np.asarray(batch.actions) == 0, axis=1)), "no empty row is drawn"


@pytest.mark.slow
def test_offline_then_online_logs_both_phases_and_a_killed_run_resumes_to_the_same_result(tmp_path: Path):
    config = online_config()
    whole = train(config, tmp_path / "whole", progress=False)
    records = list(runs.read_metrics(tmp_path / "whole", "train"))
    assert [r["step"] for r in records] == [25, 50, 75, 100, 125, 150], [r["step"] for r in records]
    assert all("exploration/episodes" not in r for r in records[:2]), "offline records have no exploration"
    episodes = [r["exploration/episodes"] for r in records[2:]]
    assert episodes == [25.0] * 4, f"one-step episodes: one per online step, got {episodes}"
    assert records[-1]["online/buffer_size"] == 10_000 + 100, records[-1]
    assert [e["step"] for e in whole["eval_history"]] == [50, 100, 150], whole["eval_history"]
    assert not (tmp_path / "whole" / BUFFER).exists()
    with killed_after(lambda record: record["step"] == 125):
        train(config, tmp_path / "killed", progress=False)
    assert runs.load_checkpoint(tmp_path / "killed").progress["step"] == 100
    with np.load(tmp_path / "killed" / BUFFER) as stored:
        assert stored["actions"].shape == (50, 2), stored["actions"].shape
    resumed = train(config, tmp_path / "killed", progress=False)
    assert resumed["timing"]["resumed_from_step"] == 100
    assert resumed["eval_history"] == whole["eval_history"], "same evaluations, to the last digit"
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rs]  # noqa: E731
    assert strip(runs.read_metrics(tmp_path / "killed", "train")) == strip(records), "same losses after resuming"


def test_online_steps_need_a_critic_an_environment_and_a_whole_number_of_chunks():
    with pytest.raises(ConfigError, match=r"online_steps: 'flow-bc' has no critic .* allowed: 0, or a method with"):
        make_run_config("flow-bc", "moons", 0, {"online_steps": 1000})
    with pytest.raises(ConfigError, match=r"online_steps: -5 is out of range; allowed: an integer >= 0"):
        make_run_config("fql", "moons", 0, {"online_steps": -5})
    with pytest.raises(ConfigError, match=r"online_steps: 150 is not a multiple of log_every=100"):
        make_run_config("fql", "moons", 0, {"online_steps": 150, "log_every": 100, "steps": 100})
    assert load_task("moons").online


def test_a_task_without_an_environment_refuses_online_steps():
    from flowkit.tasks.d4rl import TASKS

    task = next(iter(TASKS))
    with pytest.raises(ConfigError, match=rf"online_steps: task '{task}' has no environment to act in"):
        make_run_config("fql", task, 0, {"online_steps": 1000, "alpha": 10.0})
