"""A researcher's own method and own data: outside methods (entry points, import paths) and outside datasets
(.npz in OGBench's layout, local Minari datasets), each checked with one error line when broken."""

import importlib.metadata
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from flowkit.agents import AGENT_CONFIGS, AGENTS, plugins
from flowkit.cli import main
from flowkit.run_config import make_run_config
from flowkit.settings import ConfigError
from flowkit.tasks import DatasetError, load_task
from tests.helpers import TINY

PLUGIN = """
from dataclasses import dataclass

from flowkit.agents.base import Loss
from flowkit.agents.fql import FQL, FQLConfig
from flowkit.settings import setting


@dataclass(frozen=True)
class WeightedFQLConfig(FQLConfig):
    display_name = "Weighted FQL"

    q_weight: float = setting(1.0, "weight of the Q-maximisation loss", low=0)


class WeightedFQL(FQL):
    name = "{name}"
    config_class = WeightedFQLConfig

    def loss(self, params, target_params, batch, key, step):
        terms, metrics = super().loss(params, target_params, batch, key, step)
        return Loss(terms | {{"q": self.config.q_weight * terms["q"]}}, metrics)
"""
"""A variant of FQL that weighs its Q term (the docs' walk-through method)."""


@pytest.fixture
def registry():
    """Forget the outside methods a test registers, and the entry points it found."""
    before = dict(AGENTS), dict(AGENT_CONFIGS), dict(plugins.ORIGINS)
    plugins.load_entry_points.cache_clear()
    yield
    for table, saved in zip((AGENTS, AGENT_CONFIGS, plugins.ORIGINS), before, strict=True):
        table.clear()
        table.update(saved)
    plugins.load_entry_points.cache_clear()


def write_plugin(folder: Path, module: str, name: str = "weighted-fql", entry: str | None = None) -> None:
    """The plugin module, and (with `entry`) a dist-info declaring it as an installed package would."""
    (folder / f"{module}.py").write_text(PLUGIN.format(name=name))
    if entry is not None:
        info = folder / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[flowkit.agents]\n{entry} = {module}:WeightedFQL\n")


@pytest.fixture
def plugin_path(tmp_path, monkeypatch, registry):
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return tmp_path


def test_entry_point_method_runs_with_its_settings_and_sources(plugin_path):
    write_plugin(plugin_path, "weighted_plugin", entry="weighted-fql")
    config = make_run_config("weighted-fql", "moons", 0, {"q_weight": "0.5"})
    assert config.agent_config.q_weight == 0.5, config.agent_config
    source = config.sources["q_weight"]
    assert source.kind == "command line", source
    default = make_run_config("weighted-fql", "moons").sources
    assert default["q_weight"].kind == "none" and "cites no source" in default["q_weight"].text, default["q_weight"]
    assert default["alpha"].kind == "paper", f"alpha, declared by FQLConfig, keeps FQL's source: {default['alpha']}"
    assert "weighted-fql" in [entry.name for entry in importlib.metadata.entry_points(group="flowkit.agents")]


def test_entry_point_method_in_help(plugin_path, capsys):
    write_plugin(plugin_path, "weighted_help", entry="weighted-fql")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "weighted-fql (Weighted FQL) settings" in out and "q_weight" in out, out[-3000:]


def test_method_name_clash_is_one_error_line(plugin_path, capsys):
    write_plugin(plugin_path, "clashing_plugin", name="fql", entry="fql")
    assert main(["train", "--agent", "fql", "--task", "moons"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'fql' is taken by a kit method" in err, err


def test_failing_plugin_import_is_one_error_line(plugin_path, capsys):
    (plugin_path / "broken_plugin.py").write_text("import not_a_module_anywhere\n")
    info = plugin_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[flowkit.agents]\nbroken = broken_plugin:Broken\n")
    assert main(["train", "--agent", "fql", "--task", "moons"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'broken'" in err and "not_a_module_anywhere" in err, err


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nowhere_module:WeightedFQL", "failed to import"),
        ("weighted_path:Missing", "defines no 'Missing'"),
        ("weighted_path:", "expected an import path"),
        ("missing_file.py:WeightedFQL", "no such file"),
    ],
)
def test_bad_import_path_is_one_error_line(plugin_path, capsys, path, message):
    write_plugin(plugin_path, "weighted_path")
    assert main(["train", "--agent", path, "--task", "moons"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_import_path_registers_the_method(plugin_path, monkeypatch):
    write_plugin(plugin_path, "weighted_file")
    monkeypatch.chdir(plugin_path)
    assert plugins.load_method("weighted_file.py:WeightedFQL") == "weighted-fql"
    assert AGENT_CONFIGS["weighted-fql"].display_name == "Weighted FQL"


def pendulum_like(rows: int = 60, episode: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """A dataset in OGBench's raw layout: 3-D observations, 1-D actions, episodes of `episode` rows."""
    rng = np.random.default_rng(seed)
    return {
        "observations": rng.standard_normal((rows, 3)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (rows, 1)).astype(np.float32),
        "rewards": rng.standard_normal(rows).astype(np.float32),
        "terminals": (np.arange(rows) % episode == episode - 1),
    }


def test_npz_raw_layout_takes_next_rows_within_episodes(tmp_path):
    columns = pendulum_like()
    np.savez(tmp_path / "data.npz", **columns)
    task = load_task(str(tmp_path / "data.npz"))
    dataset = task.dataset
    assert dataset.observations.shape == (57, 3), (
        f"3 episodes of 20 rows give 57 transitions: {dataset.observations.shape}"
    )
    expected_next = np.concatenate([columns["observations"][start + 1 : start + 20] for start in (0, 20, 40)])
    np.testing.assert_array_equal(np.asarray(dataset.next_observations), expected_next)
    assert float(np.asarray(dataset.masks).min()) == 1.0, "masks default to 1 in the raw layout"
    assert task.evaluate(lambda obs, key: obs[:, :1] * 0, None, 1)["data_action_mse"] > 0


def test_npz_transition_layout_defaults_masks_to_not_terminal(tmp_path):
    columns = pendulum_like() | {"next_observations": pendulum_like(seed=1)["observations"]}
    np.savez(tmp_path / "data.npz", **columns)
    dataset = load_task(str(tmp_path / "data.npz")).dataset
    assert dataset.observations.shape == (60, 3), dataset.observations.shape
    np.testing.assert_array_equal(np.asarray(dataset.masks), 1.0 - columns["terminals"])


DAMAGE = {
    "missing key": (lambda c: {k: v for k, v in c.items() if k != "rewards"}, "no 'rewards' array"),
    "dtype": (lambda c: c | {"observations": c["observations"].astype(np.int64)}, "'observations' has dtype int64"),
    "shape": (lambda c: c | {"rewards": c["rewards"][:-1]}, "'rewards' has shape (59,)"),
    "nan": (lambda c: c | {"observations": np.where(np.arange(60)[:, None] == 7, np.nan, c["observations"])},
            "'observations' holds NaN or inf at row 7"),
    "bounds": (lambda c: c | {"actions": 2 * c["actions"]}, "'actions' span"),
    "masks": (lambda c: c | {"masks": np.full(60, 2.0)}, "'masks' holds values outside [0, 1]"),
}  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_npz_is_one_error_line_naming_file_and_key(tmp_path, capsys, damage):
    change, message = DAMAGE[damage]
    path = tmp_path / "data.npz"
    np.savez(path, **change(pendulum_like()))
    assert main(["train", "--task", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and message in err, err
    assert not (tmp_path / "runs").exists(), "nothing is written before the data is checked"


def test_truncated_npz_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "data.npz"
    np.savez(path, **pendulum_like())
    path.write_bytes(path.read_bytes()[:300])
    assert main(["train", "--task", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "truncated" in err, err


def test_environment_size_mismatch_and_unknown_environment(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, **pendulum_like() | {"observations": np.zeros((60, 4), np.float32)})
    with pytest.raises(DatasetError, match=r"'observations' have size 4, but environment 'Pendulum-v1' has 3"):
        load_task(f"{path}@Pendulum-v1")
    with pytest.raises(DatasetError, match="environment 'NoSuchEnv-v0'"):
        load_task(f"{path}@NoSuchEnv-v0")
    with pytest.raises(ConfigError, match=r"PATH\.npz or minari:DATASET_ID"):
        make_run_config("fql", "data.np")


@pytest.mark.slow
def test_npz_with_environment_trains_and_scores_returns(tmp_path):
    from flowkit.training import train

    path = tmp_path / "data.npz"
    np.savez(path, **pendulum_like(rows=200, episode=200))
    settings = TINY | {"eval_episodes": 2, "steps": 100, "log_every": 50, "eval_every": 100}
    result = train(make_run_config("fql", f"{path}@Pendulum-v1", 0, settings), tmp_path / "run", progress=False)
    final = result["final"]
    assert final["episode_length"] == 200 and -2000 < final["return"] < 0, final


def build_minari_dataset(dataset_id: str, episodes: int = 3) -> None:
    """A small Minari dataset on Pendulum-v1, recorded with Minari's own DataCollector."""
    import gymnasium
    import minari

    env = minari.DataCollector(gymnasium.make("Pendulum-v1", max_episode_steps=30))
    for episode in range(episodes):
        env.reset(seed=episode)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    env.create_dataset(dataset_id=dataset_id, algorithm_name="random")


@pytest.fixture
def minari_dir(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def test_minari_dataset_loads_with_actions_mapped_to_the_box(minari_dir):
    build_minari_dataset("pendulum/random-v0")
    task = load_task("minari:pendulum/random-v0")
    actions = np.asarray(task.dataset.actions)
    assert task.dataset.observations.shape == (90, 3) and actions.shape == (90, 1), task.dataset.observations.shape
    assert actions.min() < -0.5 and actions.max() > 0.5 and np.abs(actions).max() <= 1, (actions.min(), actions.max())
    assert float(np.asarray(task.dataset.masks).min()) == 1.0, "Pendulum only truncates: every mask is 1"


def test_damaged_minari_dataset_is_one_error_line(minari_dir, capsys):
    build_minari_dataset("pendulum/broken-v0", episodes=1)
    data = next((minari_dir / "pendulum" / "broken-v0" / "data").glob("main_data*"))
    data.write_bytes(data.read_bytes()[:200])
    assert main(["train", "--task", "minari:pendulum/broken-v0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'pendulum/broken-v0'" in err and "could not be read" in err, err
    assert main(["train", "--task", "minari:pendulum/absent-v0"]) == 2
    assert "'pendulum/absent-v0'" in capsys.readouterr().err


def walkthrough() -> tuple[dict[str, str], list[str]]:
    """The walk-through's files (```python NAME blocks of the docs) and its commands (```console walkthrough)."""
    docs = Path(__file__).resolve().parent.parent / "docs"
    files, commands = {}, []
    for page in ("methods.md", "tasks.md", "studies.md"):
        for block in (docs / page).read_text().split("```")[1::2]:
            header, _, body = block.partition("\n")
            if header.startswith("python "):
                files[header.split()[1]] = body
            elif header == "console walkthrough":
                commands += [line.removeprefix("$ ") for line in body.splitlines() if line.startswith("$ ")]
    return files, commands


@pytest.mark.slow
def test_walkthrough_runs_as_written(tmp_path):
    import subprocess

    files, commands = walkthrough()
    assert set(files) == {"my_methods.py", "make_data.py", "my_study.py"} and len(commands) == 5, (files, commands)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    flowkit = str(Path(sys.executable).parent / "flowkit")
    for command in commands:
        words = command.split()
        words[0] = {"python": sys.executable, "flowkit": flowkit}[words[0]]
        result = subprocess.run(words, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    report = (tmp_path / "runs" / "q-weight" / "report" / "report.md").read_text()
    assert "Weighted FQL" in report and "q_weight" in report, report[:3000]
    assert (tmp_path / "runs" / "train-only" / "config.json").exists()


INSTALLABLE = textwrap.dedent("""
    [build-system]
    requires = ["setuptools>=69"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "weighted-fql-plugin"
    version = "0.1"

    [project.entry-points."flowkit.agents"]
    weighted-fql = "weighted_fql_plugin:WeightedFQL"
""")

TWO_ARMS = f"""
from flowkit import Study

STUDY = Study(name="plugin-arms", question="Does the installed plugin run?", agents=("fql", "weighted-fql"),
              tasks=("moons",), seeds=(0,), fixed={{"q_weight": 0.5, **{TINY!r}}})
"""


@pytest.mark.slow
@pytest.mark.install
@pytest.mark.xdist_group("install")
def test_installed_plugin_package_runs_a_two_arm_study(tmp_path):
    """pip installs a real plugin package (into a --target folder, leaving the test environment as it was)."""
    import os
    import subprocess

    from tests.test_install import build_isolation_flags, pip

    package = tmp_path / "package"
    package.mkdir()
    (package / "pyproject.toml").write_text(INSTALLABLE)
    (package / "weighted_fql_plugin.py").write_text(PLUGIN.format(name="weighted-fql"))
    target = tmp_path / "site"
    pip("install", "--no-deps", *build_isolation_flags(), "--target", str(target), str(package))
    (tmp_path / "study.py").write_text(TWO_ARMS)
    env = {**os.environ, "PYTHONPATH": str(target)}
    flowkit = str(Path(sys.executable).parent / "flowkit")
    for command in (["study", "run", "study.py", "--quiet"], ["report", "study.py"]):
        result = subprocess.run([flowkit, *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    report = (tmp_path / "runs" / "plugin-arms" / "report" / "report.md").read_text()
    assert "| Task | FQL | Weighted FQL |" in report, report[:3000]
