"""OGBench data made here with OGBench's oracles, loaded through OGBench, trained on and evaluated in its envs.

The datasets are generated once per test session (2 training and 1 validation episode of 1001 steps each,
about 10 s per dataset) in a folder the pytest workers share, under a file lock.
"""

import dataclasses
import fcntl
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowkit.studies.runner as runner
from flowkit.benchmarks.bench import bench_evaluation
from flowkit.cli import main
from flowkit.reports.builder import build_report
from flowkit.settings import ConfigError
from flowkit.tasks import ACTION_CLIP, DATA_DIR_ENV, DatasetError, load_task, ogbench_generate, ogbench_tasks
from flowkit.tasks.ogbench_generate import dataset_paths, generate, import_ogbench
from flowkit.tasks.ogbench_tasks import SINGLE_TASKS
from flowkit.training import train
from tests.helpers import TINY, stored_trials, tiny_config, tiny_study

CUBE, PUZZLE = "cube-single-play-v0", "puzzle-3x3-play-v0"
CUBE_TASK, PUZZLE_TASK = "cube-single-play-singletask-task2-v0", "puzzle-3x3-play-singletask-task4-v0"
EPISODE_STEPS = 1001


@pytest.fixture(scope="session")
def ogbench_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.getbasetemp().parent / "ogbench-data"
    folder.mkdir(exist_ok=True)
    with open(folder.parent / "ogbench-data.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in (CUBE, PUZZLE):
            generate(name, folder, episodes=2, val_episodes=1, progress=False, log=lambda _: None)
    return folder


@pytest.fixture
def data_dir(ogbench_dir, monkeypatch) -> Path:
    monkeypatch.setenv(DATA_DIR_ENV, str(ogbench_dir))
    return ogbench_dir


@pytest.mark.parametrize("name", [CUBE, PUZZLE])
@pytest.mark.ogbench
def test_generated_files_have_the_official_layout(data_dir, name):
    train_path, val_path = dataset_paths(name, data_dir)
    for path, episodes in ((train_path, 2), (val_path, 1)):
        with np.load(path) as data:
            expected = {"observations", "actions", "terminals", "qpos", "qvel"} | (
                {"button_states"} if name == PUZZLE else set()
            )
            assert set(data.files) == expected
            assert {key: data[key].dtype for key in ("observations", "actions", "qpos", "qvel")} == dict.fromkeys(
                ("observations", "actions", "qpos", "qvel"), np.float32
            )
            assert data["terminals"].dtype == bool
            assert name != PUZZLE or data["button_states"].dtype == np.int64
            assert len(data["observations"]) == episodes * EPISODE_STEPS
            assert np.flatnonzero(data["terminals"]).tolist() == [EPISODE_STEPS * (i + 1) - 1 for i in range(episodes)]
            assert np.abs(data["actions"]).max() <= 1


@pytest.mark.parametrize("name", [CUBE, PUZZLE])
@pytest.mark.ogbench
def test_the_oracle_succeeds_on_the_sub_tasks_it_attempted(data_dir, name):
    summary = generate(name, data_dir, progress=False, log=lambda _: None)  # already made: only read back
    train_counts = summary["train"]
    # Measured: cube-single 22 of 22, puzzle-3x3 60 of 60 in 2 episodes (plan oracles with noise 0.1).
    assert train_counts["attempted"] >= 10
    assert train_counts["succeeded"] / train_counts["attempted"] > 0.9


@pytest.mark.ogbench
def test_single_task_data_is_ogbench_relabelled_with_clipped_actions(data_dir):
    task = load_task(PUZZLE_TASK)
    _, reference, _ = import_ogbench().make_env_and_datasets(PUZZLE_TASK, dataset_dir=str(data_dir))
    data = jax.tree.map(np.asarray, task.dataset)
    assert len(data.rewards) == 2 * (EPISODE_STEPS - 1)  # the last observation of an episode has no successor
    np.testing.assert_array_equal(data.rewards, reference["rewards"])
    np.testing.assert_array_equal(data.masks, reference["masks"])
    assert set(np.unique(data.rewards)) <= set(range(-9, 1)), "puzzle-3x3: successes - 9 buttons"
    np.testing.assert_array_equal(data.masks == 0, data.rewards == 0)
    assert np.abs(data.actions).max() <= 1 - ACTION_CLIP
    np.testing.assert_array_equal(data.actions, np.clip(reference["actions"], -1 + ACTION_CLIP, 1 - ACTION_CLIP))
    np.testing.assert_array_equal(data.next_observations[:-1][~reference["terminals"][:-1].astype(bool)],
                                  data.observations[1:][~reference["terminals"][:-1].astype(bool)])  # fmt: skip
    np.testing.assert_array_equal(data.next_actions[0], data.actions[1])
    last = EPISODE_STEPS - 2
    np.testing.assert_array_equal(data.next_actions[last], data.actions[last])
    assert len(np.asarray(task.validation.rewards)) == EPISODE_STEPS - 1


@pytest.mark.ogbench
def test_fql_trains_on_generated_data_and_is_evaluated_in_the_environment(data_dir, tmp_path):
    config = tiny_config("fql", CUBE_TASK, steps=20, log_every=10, eval_every=20, eval_episodes=2, batch_size=32)
    assert config.agent_config.alpha == 300, "FQL's alpha on cube in the public code"
    result = train(config, tmp_path / "run", progress=False)
    final = result["final"]
    assert set(final) >= {"success", "return", "episode_length"}
    assert 0 <= final["success"] <= 1
    # An episode of cube-single lasts 200 steps unless the goal is reached; each step's reward is -1 or 0.
    assert 1 <= final["episode_length"] <= 200
    assert -final["episode_length"] <= final["return"] <= 0
    assert final["consistency"]["n"] > 0
    bias = final["value_bias"]["episodes"]
    assert final["value_bias"]["n"] == 2 and final["value_bias"]["aggregation"] == "mean"
    if final["success"] == 0:  # both episodes ran into the time limit, earning -1 at each of their 200 steps
        raw = -(1 - 0.99**200) / (1 - 0.99)
        assert bias["truncated"] == [True, True]
        np.testing.assert_allclose(np.subtract(bias["return"], bias["bootstrap"]), raw, rtol=1e-9)


@pytest.mark.slow
@pytest.mark.ogbench
def test_an_ogbench_report_shows_the_value_bias_table(data_dir, tmp_path):
    """FQL for 20 updates and 2 episodes: the report's value-bias table holds the stored record's Q and return."""
    fixed = {**TINY, "steps": 20, "log_every": 10, "eval_every": 20, "eval_episodes": 2, "batch_size": 32}
    study = tiny_study(name="ogbench-bias", tasks=(CUBE_TASK,), grid={"solver": ("euler",)}, seeds=(0,), fixed=fixed)
    runner.run_study(study, tmp_path, progress=False)
    text = build_report(study, tmp_path).read_text()
    (trial,) = stored_trials(study, tmp_path)
    stored = runner.seed_records(trial)[0].value_bias
    section = text.split("## Value bias against returns")[1].split("\n## ")[0]
    row = next(line for line in section.splitlines() if line.startswith("| ") and "Q(s0, a0)" in line)
    cells = [cell.strip() for cell in row.split("|")[2:-1]]
    expected = [f"{stored['q_mean']:.3f}", f"{stored['return_mean']:.3f}"]
    assert cells[1:3] == expected and cells[-1] == "1 (2)", (cells, expected)
    assert "](value_bias.png)" in section


@pytest.mark.ogbench
def test_goal_conditioned_data_draws_goals_from_later_states_of_the_same_trajectory(data_dir):
    task = load_task(CUBE)
    raw = jax.tree.map(np.asarray, task.dataset)
    batch = jax.tree.map(np.asarray, task.dataset.sample(jax.random.PRNGKey(0), 256))
    obs_dim = raw.observations.shape[1]
    assert task.obs_dim == batch.observations.shape[1] == 2 * obs_dim
    for observation, reward in zip(batch.observations, batch.rewards, strict=True):
        index = np.flatnonzero((raw.observations == observation[:obs_dim]).all(axis=1))[0]
        goal_index = np.flatnonzero((raw.next_observations == observation[obs_dim:]).all(axis=1))[0]
        end = raw.trajectory_end[index]
        assert index <= goal_index <= end and raw.trajectory_end[goal_index] == end
        assert reward == (goal_index == index)


@pytest.mark.ogbench
def test_goal_conditioned_evaluation_covers_the_five_goals(data_dir):
    task = load_task(CUBE)
    policy = jax.jit(lambda observations, key: jnp.zeros((observations.shape[0], task.action_dim)))
    metrics = task.evaluate(policy, jax.random.PRNGKey(0), 1)
    assert set(metrics) == {"success", *(f"success/task{i}" for i in range(1, SINGLE_TASKS + 1))}
    assert metrics["success"] == 0.0, "a policy that never moves reaches none of the five goals"


@pytest.mark.ogbench
def test_evaluation_reuses_a_bounded_number_of_environments(data_dir, monkeypatch):
    """Each environment holds 150-200 MB: 50 evaluation episodes must not make 50 of them."""
    monkeypatch.setattr(ogbench_tasks, "LOCKSTEP_ENVIRONMENTS", 2)
    task = load_task(CUBE_TASK)
    weights = jax.random.normal(jax.random.PRNGKey(1), (task.obs_dim, task.action_dim))
    policy = jax.jit(lambda observations, key: jnp.tanh(observations @ weights))
    first = task.run_episodes(policy, jax.random.PRNGKey(0), [{}] * 3)
    assert len(task._envs) == 2, f"3 episodes made {len(task._envs)} environments, expected at most 2"
    assert first.lengths.shape == (3,) and (first.lengths >= 1).all(), f"episode lengths {first.lengths}"
    again = task.run_episodes(policy, jax.random.PRNGKey(0), [{}] * 3)
    np.testing.assert_array_equal(again.returns, first.returns, "same key, same episodes")
    monkeypatch.setattr(ogbench_tasks, "LOCKSTEP_ENVIRONMENTS", 3)
    unbatched = task.run_episodes(policy, jax.random.PRNGKey(0), [{}] * 3)
    np.testing.assert_array_equal(unbatched.returns, first.returns, "a deterministic policy's episodes do not "
                                  "depend on how they are batched")  # fmt: skip


@pytest.mark.ogbench
def test_an_interrupted_generation_leaves_no_loadable_file_and_resumes(data_dir, tmp_path, monkeypatch):
    folder = tmp_path / "data"
    command = [sys.executable, "-m", "flowkit.cli", "data", "generate", CUBE, "--episodes", "1", "--val-episodes",
               "1", "--data-dir", str(folder), "--quiet"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(folder.glob(".*.parts/*.npz")) and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(list(folder.glob(".*.parts/*.npz"))) == 1, "killed after the training part, before the val part"
    assert not any(path.exists() for path in dataset_paths(CUBE, folder))
    monkeypatch.setenv(DATA_DIR_ENV, str(folder))
    with pytest.raises(DatasetError, match=f"does not exist; make it with: flowkit data generate {CUBE}"):
        load_task(CUBE_TASK)

    assert main(["data", "generate", CUBE, "--episodes", "1", "--val-episodes", "1", "--data-dir", str(folder),
                 "--quiet", "--workers", "2"]) == 0  # fmt: skip
    assert not list(folder.glob(".*.parts"))
    # Episodes are seeded by their index: this training and validation episode are the shared data's two.
    made_train, made_val = dataset_paths(CUBE, folder)
    with (
        np.load(made_train) as train_part,
        np.load(made_val) as val_part,
        np.load(dataset_paths(CUBE, data_dir)[0]) as whole,
    ):
        for key in whole.files:
            np.testing.assert_array_equal(np.concatenate([train_part[key], val_part[key]]), whole[key], err_msg=key)
    assert load_task(CUBE_TASK).dataset.rewards.shape == (EPISODE_STEPS - 1,)


def _truncate(path: Path, data_dir: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _dropper(name: str):
    def drop(path: Path, data_dir: Path) -> None:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files if key != name}
        np.savez_compressed(path, **arrays)

    return drop


def _put_puzzle_data(path: Path, data_dir: Path) -> None:
    shutil.copy(dataset_paths(PUZZLE, data_dir)[0], path)


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (_truncate, r"cube-single-play-v0.npz is truncated or corrupt .*; delete it and run: flowkit data generate"),
        (_dropper("qpos"), r"cube-single-play-v0.npz has no 'qpos' array"),
        (_dropper("qvel"), r"cube-single-play-v0.npz has no 'qvel' array"),
        (_put_puzzle_data, r"observations have size \d+, but the environment's are 28"),
    ],
)
@pytest.mark.ogbench
def test_broken_files_are_refused_with_the_file_and_the_problem(data_dir, tmp_path, monkeypatch, breaker, message):
    folder = tmp_path / "broken"
    folder.mkdir()
    for path in dataset_paths(CUBE, data_dir):
        shutil.copy(path, folder / path.name)
    breaker(folder / f"{CUBE}.npz", data_dir)
    monkeypatch.setenv(DATA_DIR_ENV, str(folder))
    with pytest.raises(DatasetError, match=message):
        load_task(CUBE_TASK)


@pytest.mark.ogbench
def test_noisy_datasets_are_the_same_for_the_same_seed(tmp_path):
    """Random actions come from the episode's seeded generator, so two generations with one seed are equal
    (one episode of 200 steps each, about 20 of them random)."""
    recipe = dataclasses.replace(ogbench_generate.check_recipe("cube-single-noisy-v0"), max_episode_steps=201)
    made = []
    for run in ("first", "second"):
        ogbench_generate.make_part(recipe, 0, 0, 1, tmp_path / f"{run}.npz")
        with np.load(tmp_path / f"{run}.npz") as data:
            made.append({key: data[key] for key in data.files})
    assert made[0].keys() == made[1].keys()
    for key in made[0]:
        np.testing.assert_array_equal(made[0][key], made[1][key], err_msg=f"{key} differs between the two runs")


@pytest.mark.ogbench
def test_missing_data_stops_a_study_before_its_storage_is_created(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "empty"))
    study_file = tmp_path / "cube_study.py"
    study_file.write_text(
        "from flowkit import Study\n"
        f"STUDY = Study(name='cube', question='?', agents=('fql',), tasks=({CUBE_TASK!r},), grid={{}}, seeds=(0,))\n"
    )
    assert main(["study", "run", str(study_file), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert f"make it with: flowkit data generate {CUBE} --data-dir {tmp_path / 'empty'}" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_generate_refuses_unknown_datasets_before_making_anything(tmp_path, capsys):
    assert main(["data", "generate", "antmaze-large-navigate-v0", "--data-dir", str(tmp_path / "d")]) == 2
    assert "cannot generate 'antmaze-large-navigate-v0'; allowed: cube-single-play-v0" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    assert ogbench_generate.check_recipe(CUBE).episodes == 1000


@pytest.mark.ogbench
def test_bench_eval_measures_the_evaluation_and_the_environments_alone(data_dir):
    config = tiny_config("fql", CUBE_TASK)
    results = bench_evaluation(config, 2, iterations=1)
    rates = results["steps_per_second"]
    assert results["episodes"] == 2 and results["lockstep"] == 2 and rates["evaluation"] > 0 and rates["raw"] > 0
    assert results["share_of_raw"] == pytest.approx(rates["evaluation"] / rates["raw"])
    with pytest.raises(ConfigError, match="'moons' is not an OGBench single-task name"):
        bench_evaluation(tiny_config("fql", "moons"), 2, iterations=1)
