"""D4RL through tensorflow-datasets: tiny RLDS datasets built here, read back with FQL's conventions; no download."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowkit.tasks import DatasetError, load_task, task_class, task_names

tfds = pytest.importorskip("tensorflow_datasets")
d4rl = pytest.importorskip("flowkit.tasks.d4rl")
rlds = pytest.importorskip("flowkit.tasks.rlds")

FIELDS = ("observation", "action", "reward", "discount", "is_first", "is_last", "is_terminal")


def hopper_episodes(obs_dim: int = 11, action_dim: int = 3) -> list[dict[str, np.ndarray]]:
    """Four episodes: a timeout, a terminal (its last step the terminal observation), a lone step, a timeout."""
    rng = np.random.default_rng(0)
    specs = [(4, False), (3, True), (1, False), (3, False)]
    episodes = []
    for index, (length, terminal) in enumerate(specs):
        observation = 100.0 * index + np.arange(length)[:, None] + np.linspace(0, 0.5, obs_dim)[None, :]
        action = rng.uniform(-0.9, 0.9, (length, action_dim))
        reward = rng.normal(size=length)
        if terminal:  # RLDS: the terminal observation's step has no meaningful action or reward
            action[-1], reward[-1] = 0.0, 0.0
        last = np.arange(length) == length - 1
        episodes.append(
            {
                "observation": observation.astype(np.float32),
                "action": action.astype(np.float32),
                "reward": reward.astype(np.float32),
                "discount": np.where(last & terminal, 0.0, 1.0).astype(np.float32),
                "is_first": np.arange(length) == 0,
                "is_last": last,
                "is_terminal": last & terminal,
            }
        )
    episodes[3]["action"][0, 0] = 1.0  # exactly on the bound: clipped to 1 - 1e-5
    episodes[3]["action"][1, 1] = -1.0
    return episodes


def build_rlds(
    data_dir, name: str, episodes: list[dict], fields=FIELDS, version: str = "1.2.0", file_format: str = "array_record"
) -> None:
    """Write `episodes` as the RLDS dataset `name` ('dataset/config'), as `tfds build` would (TFRecord needs TF)."""
    dataset, config = name.split("/")
    obs_dim, action_dim = episodes[0]["observation"].shape[1], episodes[0]["action"].shape[1]
    step_features = {
        "observation": tfds.features.Tensor(shape=(obs_dim,), dtype=np.float32),
        "action": tfds.features.Tensor(shape=(action_dim,), dtype=np.float32),
        "reward": np.float32,
        "discount": np.float32,
        "is_first": np.bool_,
        "is_last": np.bool_,
        "is_terminal": np.bool_,
        "infos": {"qpos": tfds.features.Tensor(shape=(2,), dtype=np.float32)},  # D4RL's extra step metadata
    }

    class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(version)
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=config)]  # noqa: RUF012

        def _info(self):
            kept = {key: value for key, value in step_features.items() if key in fields or key == "infos"}
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict({"steps": tfds.features.Dataset(kept)})
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for index, episode in enumerate(episodes):
                steps = {key: value for key, value in episode.items() if key in fields}
                steps["infos"] = {"qpos": np.zeros((len(episode["reward"]), 2), np.float32)}
                yield index, {"steps": steps}

    Builder.name = dataset
    Builder(config=config, data_dir=str(data_dir), file_format=file_format).download_and_prepare()


def in_data_order(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Columns sorted by the first observation entry, unique per transition (TFDS shuffles episodes on writing)."""
    order = np.argsort(columns["observations"][:, 0], kind="stable")
    return {key: value[order] for key, value in columns.items()}


def expected_transitions(episodes: list[dict], reward_shift: float = 0.0) -> dict[str, np.ndarray]:
    """FQL's conventions, written out step by step: every step but an episode's last starts a transition."""
    rows = {key: [] for key in ("observations", "actions", "rewards", "terminals", "masks", "dones")}
    rows |= {"next_observations": [], "next_actions": []}
    for episode in episodes:
        length = len(episode["reward"])
        for t in range(length - 1):
            terminal = float(episode["is_terminal"][t + 1])
            rows["observations"].append(episode["observation"][t])
            rows["actions"].append(np.clip(episode["action"][t], -1 + 1e-5, 1 - 1e-5))
            rows["rewards"].append(episode["reward"][t] + reward_shift)
            rows["terminals"].append(terminal)
            rows["masks"].append(1.0 - terminal)
            rows["dones"].append(float(t == length - 2))
            rows["next_observations"].append(episode["observation"][t + 1])
            following = t + 1 if t + 1 < length - 1 else t  # the last transition's own action
            rows["next_actions"].append(np.clip(episode["action"][following], -1 + 1e-5, 1 - 1e-5))
    return in_data_order({key: np.asarray(value, dtype=np.float32) for key, value in rows.items()})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    build_rlds(root, "d4rl_mujoco_hopper/v2-medium", hopper_episodes())
    build_rlds(root, "d4rl_antmaze/umaze-v2", hopper_episodes(29, 8))
    return root


def test_read_rlds_gives_fqls_transitions_exactly(data_dir):
    episodes = hopper_episodes()
    columns = in_data_order(d4rl.read_rlds("d4rl_mujoco_hopper/v2-medium", data_dir))
    expected = expected_transitions(episodes)
    assert set(columns) == set(expected)
    for key, value in expected.items():
        assert columns[key].dtype == np.float32, key
        np.testing.assert_array_equal(columns[key], value, err_msg=key)
    assert len(columns["rewards"]) == 3 + 2 + 0 + 2, "the lone step and every episode's last step start none"
    assert columns["terminals"].tolist() == [0, 0, 0, 0, 1, 0, 0], "only the step into the terminal observation"
    assert columns["dones"].tolist() == [0, 0, 1, 0, 1, 0, 1]
    assert columns["actions"].max() == np.float32(1 - 1e-5) and columns["actions"].min() == np.float32(-1 + 1e-5)


def test_antmaze_rewards_are_shifted_by_minus_one(data_dir):
    columns = in_data_order(d4rl.read_rlds("d4rl_antmaze/umaze-v2", data_dir))
    expected = expected_transitions(hopper_episodes(29, 8), reward_shift=-1.0)
    for key, value in expected.items():
        np.testing.assert_array_equal(columns[key], value, err_msg=key)


def test_the_fast_parse_matches_tfds_data_source_step_by_step(data_dir):
    """tfds.data_source by name would construct the catalog's D4RL builder, which imports TensorFlow."""
    builder = tfds.builder_from_directory(str(rlds.dataset_folder("d4rl_mujoco_hopper/v2-medium", data_dir)))
    source = builder.as_data_source(split="train")
    for index, steps in enumerate(rlds.array_record_episodes(builder, "train")):
        for field in rlds.REQUIRED_FIELDS:
            stacked = np.stack([step[field] for step in source[index]["steps"]])
            np.testing.assert_array_equal(steps[field], stacked, err_msg=field)


def test_the_data_dir_comes_from_tfds_data_dir(data_dir, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))
    assert len(d4rl.read_rlds("d4rl_mujoco_hopper/v2-medium")["rewards"]) == 7


def test_a_dataset_not_prepared_names_the_folder_searched(tmp_path):
    with pytest.raises(DatasetError) as error:
        d4rl.read_rlds("d4rl_mujoco_hopper/v2-expert", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "d4rl_mujoco_hopper" / "v2-expert") in message
    assert "tfds build d4rl_mujoco_hopper/v2-expert" in message and "TFDS_DATA_DIR" in message
    with pytest.raises(DatasetError, match="dataset/config"):
        d4rl.read_rlds("hopper-medium-v2", tmp_path)


def test_missing_step_fields_are_named(tmp_path):
    fields = tuple(field for field in FIELDS if field != "is_terminal")
    build_rlds(tmp_path, "d4rl_mujoco_hopper/v2-medium", hopper_episodes(), fields=fields)
    with pytest.raises(DatasetError, match=r"lack the field\(s\) is_terminal"):
        d4rl.read_rlds("d4rl_mujoco_hopper/v2-medium", tmp_path)


def test_sizes_that_do_not_match_the_environment_are_refused(tmp_path):
    build_rlds(tmp_path, "d4rl_mujoco_walker2d/v2-medium", hopper_episodes())
    with pytest.raises(DatasetError, match="observations of size 11 and actions of size 3; d4rl_mujoco_walker2d has"):
        d4rl.read_rlds("d4rl_mujoco_walker2d/v2-medium", tmp_path)


def test_tfrecord_data_without_tensorflow_says_how_to_read_it(tmp_path, monkeypatch):
    """TFDS writes TFRecord only with TensorFlow: ArrayRecord files relabelled as TFDS labels TFRecord ones."""
    monkeypatch.setattr(rlds, "_tensorflow_available", lambda: False)
    build_rlds(tmp_path, "d4rl_mujoco_hopper/v2-medium", hopper_episodes())
    folder = rlds.dataset_folder("d4rl_mujoco_hopper/v2-medium", tmp_path)
    info = json.loads((folder / "dataset_info.json").read_text())
    del info["fileFormat"]  # what TFDS writes for its default format, TFRecord
    (folder / "dataset_info.json").write_text(json.dumps(info))
    for path in folder.glob("*.array_record-*"):
        path.rename(path.with_name(path.name.replace("array_record", "tfrecord")))
    with pytest.raises(DatasetError) as error:
        d4rl.read_rlds("d4rl_mujoco_hopper/v2-medium", tmp_path)
    assert str(folder) in str(error.value) and "pip install tensorflow-cpu" in str(error.value)


def test_tfrecord_data_is_read_with_tensorflow(tmp_path):
    pytest.importorskip("tensorflow")
    build_rlds(tmp_path, "d4rl_mujoco_hopper/v2-medium", hopper_episodes(), file_format="tfrecord")
    assert rlds.file_format(rlds.dataset_folder("d4rl_mujoco_hopper/v2-medium", tmp_path)) == "tfrecord"
    columns = in_data_order(d4rl.read_rlds("d4rl_mujoco_hopper/v2-medium", tmp_path))
    for key, value in expected_transitions(hopper_episodes()).items():
        np.testing.assert_array_equal(columns[key], value, err_msg=key)


def test_array_record_files_beside_tfrecord_ones_are_read_without_tensorflow(tmp_path, monkeypatch):
    """What `tfds convert_format` leaves in place: TFRecord the format, ArrayRecord an alternative."""
    monkeypatch.setattr(rlds, "_tensorflow_available", lambda: False)
    build_rlds(tmp_path, "d4rl_mujoco_hopper/v2-medium", hopper_episodes())
    folder = rlds.dataset_folder("d4rl_mujoco_hopper/v2-medium", tmp_path)
    info = json.loads((folder / "dataset_info.json").read_text())
    info |= {"fileFormat": "tfrecord", "alternativeFileFormats": ["array_record"]}
    (folder / "dataset_info.json").write_text(json.dumps(info))
    assert len(d4rl.read_rlds("d4rl_mujoco_hopper/v2-medium", tmp_path)["rewards"]) == 7


def test_locomotion_and_adroit_tasks_are_registered_and_antmaze_and_ant_are_not():
    names = task_names()
    assert "d4rl_mujoco_hopper/v2-medium-replay" in names and "d4rl_mujoco_halfcheetah/v2-medium" in names
    assert "d4rl_adroit_pen/v1-cloned" in names and "d4rl_adroit_relocate/v1-expert" in names
    assert not any(name.startswith(("d4rl_antmaze", "d4rl_mujoco_ant")) for name in names)
    assert task_class("d4rl_mujoco_walker2d/v2-expert").family == "d4rl"


def test_check_data_refuses_absent_data_cheaply(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match="not prepared"):
        task_class("d4rl_mujoco_hopper/v2-medium").check_data("d4rl_mujoco_hopper/v2-medium")


@pytest.mark.slow
def test_a_hopper_task_evaluates_in_gymnasium(data_dir, monkeypatch):
    pytest.importorskip("gymnasium")
    pytest.importorskip("mujoco")
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))
    task = load_task("d4rl_mujoco_hopper/v2-medium")
    task.check_data(task.name)
    assert (task.obs_dim, task.action_dim) == (11, 3)
    assert sorted(np.asarray(task.dataset.masks).tolist()) == [0, 1, 1, 1, 1, 1, 1]
    calls = []

    def still(observations, key):
        calls.append(observations.shape)
        return jnp.zeros((observations.shape[0], 3))

    metrics = task.evaluate(still, jax.random.PRNGKey(0), 2)
    assert set(metrics) == task.metrics and all(np.isfinite(value) for value in metrics.values())
    hopper = d4rl.ENVIRONMENTS["d4rl_mujoco_hopper"]
    low, high = hopper.random_return, hopper.expert_return
    assert metrics["normalized_score"] == pytest.approx(100 * (metrics["return"] - low) / (high - low))
    assert set(calls) == {(2, 11)}, "one policy call per step on both episodes' observations"
    assert metrics == task.evaluate(still, jax.random.PRNGKey(0), 2), "the key fixes the episodes"
    again, episodes = task.evaluate_episodes(still, jax.random.PRNGKey(0), 2)
    returns = [rewards.sum() for rewards in episodes.rewards]
    assert again == metrics and np.mean(returns) == pytest.approx(metrics["return"]), (returns, metrics)
    np.testing.assert_array_equal(episodes.first_actions, np.zeros((2, 3)))
    assert episodes.first_observations.shape == episodes.last_observations.shape == (2, 11)
    cut_by_limit = episodes.lengths == hopper.max_steps
    assert episodes.truncated.tolist() == cut_by_limit.tolist(), (episodes.lengths, episodes.truncated)


@pytest.mark.slow
def test_import_flowkit_does_not_import_tensorflow_datasets():
    code = (
        "import sys, flowkit, flowkit.run_config, flowkit.tasks as d; d.task_names(); "
        "assert 'tensorflow_datasets' not in sys.modules and 'gymnasium' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_run_folders_of_tfds_names_are_one_folder():
    from flowkit.studies.study import cell_slug

    assert "/" not in cell_slug({"agent": "fql", "task": "d4rl_mujoco_hopper/v2-medium", "alpha": 3.0})


@pytest.mark.slow
def test_adroit_pen_episodes_end_at_100_steps_or_when_the_pen_falls(tmp_path, monkeypatch):
    pytest.importorskip("gymnasium_robotics")
    build_rlds(tmp_path, "d4rl_adroit_pen/v1-human", hopper_episodes(45, 24))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    task = load_task("d4rl_adroit_pen/v1-human")
    heights = []

    def policy(observations, key):
        heights.append(np.asarray(observations[:, 26]))
        return jnp.full((observations.shape[0], 24), -1.0 if len(heights) > 1 else 0.0)

    metrics = task.evaluate(policy, jax.random.PRNGKey(0), 2)
    assert all(np.isfinite(value) for value in metrics.values())
    assert len(heights) <= 100 and heights[0].min() > 0.075, "the pen starts in the hand"
    dropped = [task._dropped(np.r_[np.zeros(26), height]) for height in (0.05, 0.2)]
    assert dropped == [True, False]
