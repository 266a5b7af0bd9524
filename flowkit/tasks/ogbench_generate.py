"""OGBench datasets made on this machine with OGBench's own environments and scripted oracles.

Many clusters cannot reach OGBench's dataset server, so the kit follows the recipe of OGBench's data
generation scripts: manipulation data from the plan oracles with smoothed noise ("play") or the Markov oracles
with Gaussian noise and random actions ("noisy"), a new target whenever the oracle is done; pointmaze data
from the maze's oracle subgoal direction plus Gaussian noise, a new goal whenever one is reached. Files have
the official layout, keys and dtypes, with the -val file beside them, so ogbench.make_env_and_datasets loads
them unchanged.

Every episode is seeded from (seed, episode index), so a dataset does not depend on how many worker
processes made it. Episodes are made in parts of PART_EPISODES, each saved atomically in a hidden folder
beside the dataset; an interrupted run resumes from its finished parts, and the dataset files appear only
when whole (written to a temporary file and renamed). check_dataset_file refuses a file that is not in that
layout (missing, truncated, of another environment) from its array headers alone.
"""

from __future__ import annotations

import io
import itertools
import json
import multiprocessing
import queue
import time
import warnings
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowkit import runs
from flowkit.progress_bars import ProgressBar, progress_bar
from flowkit.settings import ConfigError
from flowkit.tasks import DatasetError, ogbench_oracles

PART_EPISODES = 10
"""Episodes per part file: the unit of work of a worker process and of resumption."""


@dataclass(frozen=True)
class Recipe:
    """How OGBench's scripts make one dataset (their commands' flags)."""

    env_name: str
    oracle: str
    """'plan', 'markov' (manipulation) or 'subgoal' (pointmaze)."""
    episodes: int
    max_episode_steps: int
    p_random_action: float = 0.0


def _recipes() -> dict[str, Recipe]:
    recipes = {}
    for env, p_random in (("cube-single", 0.1), ("cube-double", 0.1), ("scene", 0.1), ("puzzle-3x3", 0.2),
                          ("puzzle-4x4", 0.2)):  # fmt: skip
        recipes[f"{env}-play-v0"] = Recipe(f"{env}-v0", "plan", 1000, 1001)
        recipes[f"{env}-noisy-v0"] = Recipe(f"{env}-v0", "markov", 1000, 1001, p_random)
    for maze in ("medium", "large", "teleport"):
        recipes[f"pointmaze-{maze}-navigate-v0"] = Recipe(f"pointmaze-{maze}-v0", "subgoal", 1000, 1001)
    recipes["pointmaze-giant-navigate-v0"] = Recipe("pointmaze-giant-v0", "subgoal", 500, 2001)
    return recipes


RECIPES = _recipes()
"""The datasets the kit can make, by their OGBench names."""


def dataset_paths(name: str, data_dir: Path) -> tuple[Path, Path]:
    """The training and validation files of dataset `name`, as OGBench names them."""
    return data_dir / f"{name}.npz", data_dir / f"{name}-val.npz"


def generate_command(name: str, data_dir: Path) -> str:
    return f"flowkit data generate {name} --data-dir {data_dir}"


HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
REQUIRED_KEYS = {
    "observations": np.floating,
    "actions": np.floating,
    "terminals": np.bool_,
    "qpos": np.floating,
    "qvel": np.floating,
}
"""The arrays every OGBench dataset file holds (button_states too in scene and puzzle files), with their kinds."""


def check_dataset_file(path: Path, obs_dim: int, action_dim: int, generate: str) -> None:
    """Refuse a missing, truncated or mismatched dataset file from its zip directory and array headers alone."""
    if not path.exists():
        raise DatasetError(f"dataset file {path} does not exist; make it with: {generate}")
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {}
            for member in archive.namelist():
                with archive.open(member) as stream:
                    read_header = HEADER_READERS[np.lib.format.read_magic(stream)]
                    shape, _, dtype = read_header(stream)
                    headers[member.removesuffix(".npy")] = shape, dtype
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise DatasetError(
            f"dataset file {path} is truncated or corrupt ({error}); delete it and run: {generate}"
        ) from None
    for key, kind in REQUIRED_KEYS.items():
        if key not in headers:
            raise DatasetError(f"dataset file {path} has no {key!r} array; it holds {sorted(headers)}")
        if not np.issubdtype(headers[key][1], kind):
            raise DatasetError(f"dataset file {path}: {key!r} has dtype {headers[key][1]}, expected {kind.__name__}")
    lengths = {key: shape[0] for key, (shape, _) in headers.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetError(f"dataset file {path}: arrays of different lengths {lengths}")
    for key, expected in (("observations", obs_dim), ("actions", action_dim)):
        size = headers[key][0][-1]
        if size != expected:
            raise DatasetError(
                f"dataset file {path}: {key} have size {size}, but the environment's are {expected}; "
                f"the file belongs to another environment (regenerate it with: {generate})"
            )


def check_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"dataset: cannot generate {name!r}; allowed: {', '.join(RECIPES)}")
    return RECIPES[name]


def episode_seed(seed: int, episode: int, retry: int = 0) -> int:
    """The seed of an episode (and of its retries: OGBench's script draws unhealthy scene episodes again)."""
    return int(np.random.SeedSequence([seed, episode, retry]).generate_state(1)[0])


def import_ogbench() -> Any:
    """ogbench, with its environments registered in Gymnasium (quietly: MuJoCo's viewer warns that there is
    no display, and none is needed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import ogbench

    return ogbench


def make_env(env_id: str, **kwargs: Any) -> Any:
    """An OGBench environment (quietly: Gymnasium warns that OGBench's float64 box bounds are cast)."""
    import gymnasium

    import_ogbench()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gymnasium.make(env_id, **kwargs)


def _make_env(recipe: Recipe) -> Any:
    kwargs = {"mode": "data_collection"} if recipe.oracle != "subgoal" else {}
    return make_env(recipe.env_name, terminate_at_goal=False, max_episode_steps=recipe.max_episode_steps, **kwargs)


def _as_official_dtypes(columns: dict[str, list]) -> dict[str, np.ndarray]:
    dtypes = {"terminals": bool, "button_states": np.int64}
    return {key: np.asarray(values, dtype=dtypes.get(key, np.float32)) for key, values in columns.items()}


def make_part(
    recipe: Recipe, seed: int, first: int, stop: int, path: Path, report: Callable[[int], None] | None = None
) -> dict[str, int]:
    """Make episodes [first, stop) and save them atomically to `path`; return the oracle's sub-task counts.

    `report` is told the steps of each finished episode (for the progress bar).
    """
    env = _make_env(recipe)
    oracles = ogbench_oracles.manipulation_oracles(env, recipe) if recipe.oracle != "subgoal" else {}
    columns: dict[str, list] = defaultdict(list)
    stats = {"attempted": 0, "succeeded": 0, "unfinished": 0, "steps": 0}
    for index in range(first, stop):
        for retry in itertools.count():
            seed_here = episode_seed(seed, index, retry)
            np.random.seed(seed_here)
            attempt = dict(stats)
            if recipe.oracle == "subgoal":
                episode = ogbench_oracles.pointmaze_episode(env, seed_here, attempt)
            else:
                episode = ogbench_oracles.manipulation_episode(env, recipe, oracles, seed_here, attempt)
            if not recipe.env_name.startswith("scene") or ogbench_oracles.scene_episode_healthy(
                np.array(episode["qpos"])
            ):
                break
        stats = attempt
        stats["steps"] += len(episode["terminals"])
        for key, values in episode.items():
            columns[key].extend(values)
        if report is not None:
            report(len(episode["terminals"]))
    buffer = io.BytesIO()
    np.savez(buffer, stats=np.array(json.dumps(stats)), **_as_official_dtypes(columns))
    runs.write_atomic(path, buffer.getvalue())
    return stats


_progress: Any = None
"""In a worker process, the queue it reports finished steps on (set by _init_worker)."""


def _init_worker(progress: Any) -> None:
    global _progress
    _progress = progress


def _make_part_in_worker(recipe: Recipe, seed: int, first: int, stop: int, path: Path) -> dict[str, int]:
    return make_part(recipe, seed, first, stop, path, _progress.put)


def _parts(first: int, stop: int) -> Iterator[tuple[int, int]]:
    for start in range(first, stop, PART_EPISODES):
        yield start, min(start + PART_EPISODES, stop)


def _part_path(parts_dir: Path, first: int, stop: int) -> Path:
    return parts_dir / f"episodes-{first:06d}-{stop:06d}.npz"


def _assemble(paths: list[Path], destination: Path) -> dict[str, int]:
    """Concatenate part files into one official-layout file, written atomically; return the summed counts."""
    columns: dict[str, list[np.ndarray]] = defaultdict(list)
    totals: dict[str, int] = defaultdict(int)
    for path in paths:
        with np.load(path) as part:
            for key, count in json.loads(str(part["stats"])).items():
                totals[key] += count
            for key in part.files:
                if key != "stats":
                    columns[key].append(part[key])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{key: np.concatenate(arrays) for key, arrays in columns.items()})
    runs.write_atomic(destination, buffer.getvalue())
    return dict(totals)


def generate(
    name: str,
    data_dir: Path,
    *,
    episodes: int | None = None,
    val_episodes: int | None = None,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Make dataset `name` and its -val file in `data_dir` (skipped if both exist); return what was made."""
    recipe = check_recipe(name)
    episodes, val_episodes = _episode_counts(recipe, episodes, val_episodes, workers)
    train_path, val_path = dataset_paths(name, data_dir)
    summary_path = data_dir / f"{name}.generation.json"
    if train_path.exists() and val_path.exists():
        log(f"{name}: {train_path} and {val_path.name} exist; skipped")
        return json.loads(summary_path.read_text()) if summary_path.exists() else {}

    parts_dir = data_dir / f".{name}.seed{seed}.parts"
    runs.check_writable(parts_dir, "data folder")  # before an episode is made, not when its part is saved
    parts_dir.mkdir(parents=True, exist_ok=True)
    splits = {train_path: list(_parts(0, episodes)), val_path: list(_parts(episodes, episodes + val_episodes))}
    todo = [(first, stop) for ranges in splits.values() for first, stop in ranges
            if not _part_path(parts_dir, first, stop).exists()]  # fmt: skip
    total_steps = sum(stop - first for first, stop in todo) * recipe.max_episode_steps
    started = time.perf_counter()
    bar = progress_bar(total=total_steps, desc=name, unit="step", unit_scale=True, disable=not progress)
    _make_parts(recipe, seed, todo, parts_dir, workers, bar)
    seconds = time.perf_counter() - started

    summary: dict[str, Any] = {"dataset": name, "env_name": recipe.env_name, "oracle": recipe.oracle, "seed": seed,
                               "episodes": episodes, "val_episodes": val_episodes}  # fmt: skip
    for path, ranges in splits.items():
        summary["val" if path == val_path else "train"] = _assemble_split(parts_dir, ranges, path)
    summary["seconds"] = seconds
    summary["steps_per_second"] = total_steps / seconds if seconds > 0 else 0.0
    runs.write_json_atomic(summary_path, summary)
    for path in parts_dir.iterdir():
        path.unlink()
    parts_dir.rmdir()
    train = summary["train"]
    log(f"{name}: wrote {train_path} ({train['steps']} steps) and {val_path.name} ({summary['val']['steps']} steps); "
        f"the oracle succeeded on {train['succeeded']} of the {train['attempted']} sub-tasks it finished "
        f"({100 * train['oracle_success_rate']:.1f}%{_by_kind(train)})")  # fmt: skip
    return summary


def _episode_counts(recipe: Recipe, episodes: int | None, val_episodes: int | None, workers: int) -> tuple[int, int]:
    """The training and validation episodes to make (OGBench's count, a tenth of it for validation, unless
    given), refused unless positive, as is the number of worker processes."""
    episodes = recipe.episodes if episodes is None else episodes
    val_episodes = max(1, episodes // 10) if val_episodes is None else val_episodes
    for field, value in (("episodes", episodes), ("val_episodes", val_episodes)):
        if value < 1:
            raise ConfigError(f"{field}: expected a positive number of episodes, got {value}")
    if workers < 1:
        raise ConfigError(f"workers: expected a positive number of processes, got {workers}")
    return episodes, val_episodes


def _make_parts(
    recipe: Recipe, seed: int, todo: list[tuple[int, int]], parts_dir: Path, workers: int, bar: ProgressBar
) -> None:
    """Make the parts not made yet, in this process or in `workers` processes, then close the progress bar."""
    try:
        if workers == 1:
            for first, stop in todo:
                make_part(recipe, seed, first, stop, _part_path(parts_dir, first, stop), bar.update)
        else:
            _make_parts_in_processes(recipe, seed, todo, parts_dir, workers, bar)
    finally:
        bar.close()


def _assemble_split(parts_dir: Path, ranges: list[tuple[int, int]], path: Path) -> dict[str, Any]:
    """One split's file from its parts; its counts and the oracle's success rates (overall and per sub-task)."""
    counts = _assemble([_part_path(parts_dir, first, stop) for first, stop in ranges], path)
    kinds = [key.removeprefix("attempted") for key in counts if key.startswith("attempted")]
    rates = {f"oracle_success_rate{kind}": counts[f"succeeded{kind}"] / max(counts[f"attempted{kind}"], 1)
             for kind in kinds}  # fmt: skip
    return {**counts, **rates}


def _by_kind(counts: dict[str, Any]) -> str:
    kinds = [key.removeprefix("attempted/") for key in counts if key.startswith("attempted/")]
    if len(kinds) < 2:
        return ""
    return "; " + ", ".join(f"{kind} {counts[f'succeeded/{kind}']}/{counts[f'attempted/{kind}']}" for kind in kinds)


def _make_parts_in_processes(
    recipe: Recipe, seed: int, todo: list[tuple[int, int]], parts_dir: Path, workers: int, bar: ProgressBar
) -> None:
    context = multiprocessing.get_context("spawn")
    steps_done = context.Queue()
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(steps_done,)) as pool:
        pending = {pool.submit(_make_part_in_worker, recipe, seed, first, stop, _part_path(parts_dir, first, stop))
                   for first, stop in todo}  # fmt: skip
        while pending:
            finished, pending = wait(pending, timeout=0.5)
            for future in finished:
                future.result()
            while True:
                try:
                    bar.update(steps_done.get_nowait())
                except queue.Empty:
                    break
