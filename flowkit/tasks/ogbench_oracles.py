"""One episode of an OGBench dataset as OGBench's data generation scripts make it: the manipulation oracles
(plan oracles with smoothed noise, or Markov oracles with Gaussian noise and random actions), a new target
whenever the oracle is done, and scene's check that the block stayed visible; pointmaze's oracle subgoal
direction plus Gaussian noise, a new goal whenever one is reached. ogbench_generate.py makes datasets of them."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from flowkit.tasks.ogbench_generate import Recipe

MANIPULATION_NOISE = 0.1
NOISE_SMOOTHING = 0.5
MARKOV_MIN_NORM = 0.4
POINTMAZE_NOISE = 0.5


def manipulation_oracles(env: Any, recipe: Recipe) -> dict[str, Any]:
    """OGBench's oracles for the environment, by the sub-task names the environment asks for."""
    from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
    from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
    from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
    from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    if recipe.oracle == "plan":
        plan = {"env": env, "noise": MANIPULATION_NOISE, "noise_smoothing": NOISE_SMOOTHING}
        if recipe.env_name.startswith("puzzle"):
            return {"button": ButtonPlanOracle(gripper_always_closed=True, **plan)}
        oracles = {"cube": CubePlanOracle(**plan)}
        if recipe.env_name.startswith("scene"):
            oracles |= {"button": ButtonPlanOracle(**plan), "drawer": DrawerPlanOracle(**plan),
                        "window": WindowPlanOracle(**plan)}  # fmt: skip
        return oracles
    markov = {"env": env, "min_norm": MARKOV_MIN_NORM}
    if recipe.env_name.startswith("puzzle"):
        return {"button": ButtonMarkovOracle(gripper_always_closed=True, **markov)}
    if recipe.env_name.startswith("scene"):
        return {"cube": CubeMarkovOracle(max_step=100, **markov), "button": ButtonMarkovOracle(**markov),
                "drawer": DrawerMarkovOracle(**markov), "window": WindowMarkovOracle(**markov)}  # fmt: skip
    return {"cube": CubeMarkovOracle(**markov)}


def _stack_probability(env_name: str) -> float:
    """The chance that a new cube target is a stack, per environment, as in OGBench's script."""
    if "single" in env_name:
        return 0.0
    if "double" in env_name:
        return float(np.random.uniform(0.0, 0.25))
    return 0.5


def scene_episode_healthy(qpos: np.ndarray) -> bool:
    """The block stays visible: not too far right, and not too far left unless inside the drawer."""
    block = qpos[:, 14:17]
    too_far_left = (block[:, 1] <= -0.3) & ((block[:, 2] < 0.06) | (block[:, 2] > 0.08))
    return not ((block[:, 1] >= 0.29).any() or too_far_left.any())


def manipulation_episode(
    env: Any, recipe: Recipe, oracles: dict[str, Any], seed: int, stats: dict[str, int]
) -> dict[str, list]:
    observation, info = env.reset(seed=seed)
    p_stack = _stack_probability(recipe.env_name)
    noise_scale = np.random.uniform(0, MANIPULATION_NOISE) * np.array([1, 1, 1, 3, 10])
    target = info["privileged/target_task"]
    oracle = oracles[target]
    oracle.reset(observation, info)
    episode = defaultdict(list)
    done = False
    while not done:
        if np.random.rand() < recipe.p_random_action:
            # Uniform on the action box, as action_space.sample(), but from the episode's seeded generator: OGBench
            # builds a new, randomly seeded Box on every access of action_space.
            action = np.random.uniform(env.action_space.low, env.action_space.high)
        else:
            action = np.array(oracle.select_action(observation, info))
            if recipe.oracle == "markov":
                action = action + np.random.normal(0, noise_scale, action.shape)
        action = np.clip(action, -1, 1)
        next_observation, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if oracle.done:
            for key in ("", f"/{target}"):
                stats[f"attempted{key}"] = stats.get(f"attempted{key}", 0) + 1
                stats[f"succeeded{key}"] = stats.get(f"succeeded{key}", 0) + bool(info["success"])
            oracle_observation, oracle_info = env.unwrapped.set_new_target(p_stack=p_stack)
            target = oracle_info["privileged/target_task"]
            oracle = oracles[target]
            oracle.reset(oracle_observation, oracle_info)
        _append_step(episode, observation, action, done, info)
        if "prev_button_states" in info:
            episode["button_states"].append(info["prev_button_states"])
        observation = next_observation
    stats["unfinished"] += 1
    return episode


def _maze_cells(maze_map: np.ndarray) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Free cells, and the free cells that are not straight corridor (where goals are drawn)."""
    free, vertices = [], []
    for i, j in zip(*np.nonzero(maze_map == 0), strict=True):
        free.append((int(i), int(j)))
        corridor = (maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0 and maze_map[i, j - 1] == 1
                    and maze_map[i, j + 1] == 1) or (maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0
                    and maze_map[i - 1, j] == 1 and maze_map[i + 1, j] == 1)  # fmt: skip
        if not corridor:
            vertices.append((int(i), int(j)))
    return free, vertices


def pointmaze_episode(env: Any, seed: int, stats: dict[str, int]) -> dict[str, list]:
    maze = env.unwrapped
    free, vertices = _maze_cells(maze.maze_map)
    start, goal = free[np.random.randint(len(free))], vertices[np.random.randint(len(vertices))]
    observation, _ = env.reset(seed=seed, options={"task_info": {"init_ij": start, "goal_ij": goal}})
    episode = defaultdict(list)
    done = False
    while not done:
        subgoal, _ = maze.get_oracle_subgoal(maze.get_xy(), maze.cur_goal_xy)
        direction = subgoal - maze.get_xy()
        direction = direction / (np.linalg.norm(direction) + 1e-6)
        action = np.clip(direction + np.random.normal(0, POINTMAZE_NOISE, direction.shape), -1, 1)
        next_observation, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if info["success"]:
            stats["attempted"] += 1
            stats["succeeded"] += 1
            maze.set_goal(vertices[np.random.randint(len(vertices))])
        _append_step(episode, observation, action, done, info)
        observation = next_observation
    stats["unfinished"] += 1
    return episode


def _append_step(episode: dict, observation: np.ndarray, action: np.ndarray, done: bool, info: dict) -> None:
    episode["observations"].append(observation)
    episode["actions"].append(action)
    episode["terminals"].append(done)
    episode["qpos"].append(info["prev_qpos"])
    episode["qvel"].append(info["prev_qvel"])
