"""D4RL through tensorflow-datasets: RLDS episodes from a TFDS data dir as the kit's transitions.

The TFDS catalog holds D4RL as RLDS datasets (d4rl_mujoco_*, d4rl_antmaze, d4rl_adroit_*): episodes whose steps
carry observation, action, reward, discount, is_first, is_last and is_terminal. In RLDS a step's action and reward
lead to the next step's observation, and the last step (is_last) holds only an observation: the terminal
observation after an environment terminal (is_terminal), the final observation of a timed-out episode, or, where
D4RL recorded no next observation, the last real step. So the transitions of an episode are its steps before the
last one, each with the next step's observation; nothing crosses an episode boundary.

The conventions follow the public FQL code (seohongpark/fql, envs/d4rl_utils.py and envs/env_utils.py):
- actions are clipped to [-1 + 1e-5, 1 - 1e-5], strictly inside the box (atanh of an action stays finite);
- masks = 1 - terminals, with terminals the environment's terminals (is_terminal of the next step), never
  timeouts: a timed-out episode still bootstraps from its last observation;
- dones mark the last transition of each episode (FQL calls them "terminals");
- antmaze rewards become reward - 1 (0 at the goal, -1 elsewhere), as FQL trains on them.

Nothing is downloaded: the kit reads data that `tfds build` (which needs the network and TensorFlow) has prepared.
ArrayRecord data is read with tensorflow-datasets alone; TFRecord data (what `tfds build` writes by default) needs
TensorFlow (`pip install tensorflow-cpu`) or a one-time `tfds convert_format` to ArrayRecord. tensorflow-datasets
and gymnasium come with the optional extra `flowkit[d4rl]` (TensorFlow does not) and are imported only when data is
read or a task evaluated.

Locomotion tasks (halfcheetah, hopper, walker2d) are evaluated in Gymnasium's MuJoCo v4 environments, which
keep the models of the v2 environments D4RL's data came from, under the maintained `mujoco` bindings (v5 changed
Walker2d's right-foot friction and both robots' healthy reward). Adroit tasks (door, hammer, pen, relocate) are
evaluated in gymnasium-robotics' AdroitHand* environments, ports of D4RL's hand environments with the same
observations and dense rewards (door, hammer and relocate: v1 from gymnasium-robotics 1.2.1 to 1.4.2, v2 after);
as in D4RL, pen episodes last 100 steps and end when the pen falls (the port never ends them), the others 200.
Scores are therefore close to, not identical with, D4RL's own evaluation under mujoco-py.

Ant is read but not a task: D4RL's 111-entry observations end with 84 contact forces, which Gymnasium's
documentation says mujoco-py 2 (D4RL's) returned as zeros, while Ant-v4 computes them (and charges a contact cost)
and Ant-v5 has 105 entries. Antmaze is read but not a task either: gymnasium-robotics' AntMaze has other
observations (a goal dictionary, 27 or 105 entries) and mazes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowkit.settings import Source
from flowkit.tasks import (
    FQL_README,
    NOT_RETRIEVED,
    DatasetError,
    Declared,
    Episodes,
    Policy,
    Task,
    as_device_arrays,
    clip_actions,
    rlds,
)

SIZES: dict[str, tuple[int, int]] = {
    "d4rl_mujoco_halfcheetah": (17, 6),
    "d4rl_mujoco_hopper": (11, 3),
    "d4rl_mujoco_walker2d": (17, 6),
    "d4rl_mujoco_ant": (111, 8),
    "d4rl_antmaze": (29, 8),
    "d4rl_adroit_door": (39, 28),
    "d4rl_adroit_hammer": (46, 26),
    "d4rl_adroit_pen": (45, 24),
    "d4rl_adroit_relocate": (39, 30),
}
"""(observation size, action size) of each D4RL dataset of the TFDS catalog (its builders' obs_len, action_len)."""

MUJOCO_CONFIGS = (
    *(f"v0-{kind}" for kind in ("expert", "medium", "medium-expert", "mixed", "random")),
    *(f"v1-{kind}" for kind in ("expert", "medium", "medium-expert", "medium-replay", "full-replay", "random")),
    *(f"v2-{kind}" for kind in ("expert", "full-replay", "medium", "medium-expert", "medium-replay", "random")),
)
"""The TFDS catalog's configs of d4rl_mujoco_{halfcheetah,hopper,walker2d,ant}."""

ADROIT_CONFIGS = ("v0-human", "v0-cloned", "v0-expert", "v1-human", "v1-cloned", "v1-expert")
"""The TFDS catalog's configs of d4rl_adroit_{door,hammer,pen,relocate}."""


FQL_ADROIT: dict[str, tuple[float, int]] = {
    "pen/v1-human": (10_000.0, 203),
    "pen/v1-cloned": (10_000.0, 205),
    "pen/v1-expert": (3_000.0, 207),
    "door/v1-human": (30_000.0, 209),
    "door/v1-cloned": (30_000.0, 211),
    "door/v1-expert": (30_000.0, 213),
    "hammer/v1-human": (30_000.0, 215),
    "hammer/v1-cloned": (10_000.0, 217),
    "hammer/v1-expert": (30_000.0, 219),
    "relocate/v1-human": (10_000.0, 221),
    "relocate/v1-cloned": (30_000.0, 223),
    "relocate/v1-expert": (30_000.0, 225),
}
"""FQL's alpha on each Adroit dataset and the line of the public README that gives it (every one with q_agg=min
and 500k updates)."""


class Environment(NamedTuple):
    """Where a D4RL task is evaluated, and the returns that its normalized score maps to 0 and 100."""

    env_id: str
    max_steps: int
    random_return: float
    expert_return: float
    ends_below: tuple[int, float] | None = None
    """(index, height): the episode also ends once observation[index] < height (D4RL's pen ends when dropped)."""


ENVIRONMENTS: dict[str, Environment] = {
    "d4rl_mujoco_halfcheetah": Environment("HalfCheetah-v4", 1000, -280.178953, 12135.0),
    "d4rl_mujoco_hopper": Environment("Hopper-v4", 1000, -20.272305, 3234.3),
    "d4rl_mujoco_walker2d": Environment("Walker2d-v4", 1000, 1.629008, 4592.3),
    "d4rl_adroit_door": Environment("AdroitHandDoor-v1", 200, -56.512833, 2880.5693087298737),
    "d4rl_adroit_hammer": Environment("AdroitHandHammer-v1", 200, -274.856578, 12794.134825156867),
    "d4rl_adroit_pen": Environment("AdroitHandPen-v1", 100, 96.262799, 3076.8331017826877, ends_below=(26, 0.075)),
    "d4rl_adroit_relocate": Environment("AdroitHandRelocate-v1", 200, -6.425911, 4233.877797728884),
}
"""The environment of each D4RL dataset that is a task (see the module docstring for the choices). Episode lengths
are D4RL's registrations' max_episode_steps; random and expert returns are D4RL's REF_MIN_SCORE and REF_MAX_SCORE
(d4rl/infos.py and d4rl/hand_manipulation_suite/__init__.py; the same for every dataset of an environment)."""


def read_rlds(name: str, data_dir: Path | str | None = None, split: str = "train") -> dict[str, np.ndarray]:
    """Transitions of the RLDS dataset `name` ('dataset/config[:version]') in a TFDS data dir, FQL's conventions.

    Returns float32 columns observations, actions, rewards, terminals (environment terminals), masks
    (1 - terminals), dones (1 at each episode's last transition), next_observations and next_actions (the action
    taken at the next observation, the transition's own action at an episode's end).
    """
    folder, episodes = rlds.read_episodes(name, data_dir, split)
    dataset = rlds.split_name(name)[0]
    parts: dict[str, list[np.ndarray]] = {}
    sizes: tuple[int, int] | None = None
    for index, columns in enumerate(episodes):
        sizes = _check_sizes(columns, sizes, dataset, f"{folder} ({split}, episode {index})")
        for key, value in _episode_transitions(columns).items():
            parts.setdefault(key, []).append(value)
    if not parts:
        raise DatasetError(f"{folder} ({split}): no episode has two steps, so there is no transition to learn from")
    result = {key: np.concatenate(value) for key, value in parts.items()}
    for key in ("actions", "next_actions"):
        result[key] = clip_actions(result[key])
    if dataset == "d4rl_antmaze":
        result["rewards"] = result["rewards"] - 1.0
    result["masks"] = 1.0 - result["terminals"]
    return result


def _check_sizes(
    columns: dict[str, np.ndarray], sizes: tuple[int, int] | None, dataset: str, where: str
) -> tuple[int, int]:
    """The episode's observation and action sizes, refused unless they are the dataset's (its first episode's,
    and the catalog's where SIZES knows it)."""
    episode_sizes = (columns["observation"].shape[1], columns["action"].shape[1])
    expected = SIZES.get(dataset)
    if sizes is None:
        if expected is not None and episode_sizes != expected:
            raise DatasetError(
                f"{where}: observations of size {episode_sizes[0]} and actions of size {episode_sizes[1]}; {dataset} "
                f"has observations of size {expected[0]} and actions of size {expected[1]}"
            )
    elif episode_sizes != sizes:
        raise DatasetError(
            f"{where}: observations of size {episode_sizes[0]} and actions of size {episode_sizes[1]}, where "
            f"earlier episodes have {sizes[0]} and {sizes[1]}"
        )
    return episode_sizes


def _episode_transitions(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """An episode's steps before the last, each with the next step's observation and action (none if it has one
    step)."""
    n = len(columns["is_last"]) - 1
    if n < 1:
        return {}
    observations = columns["observation"].astype(np.float32)
    actions = columns["action"].astype(np.float32)
    dones = np.zeros(n, np.float32)
    dones[-1] = 1.0
    return {
        "observations": observations[:-1],
        "actions": actions[:-1],
        "rewards": columns["reward"][:-1].astype(np.float32),
        "terminals": columns["is_terminal"][1:].astype(np.float32),
        "dones": dones,
        "next_observations": observations[1:],
        "next_actions": np.concatenate([actions[1:n], actions[n - 1 : n]]),
    }


class D4RLTask(Task):
    """A D4RL dataset scored by rollouts in its Gymnasium environment (see ENVIRONMENTS)."""

    family = "d4rl"
    score_metric = "normalized_score"
    metrics = frozenset({"return", "normalized_score"})
    task_defaults: ClassVar[Mapping[str, Mapping[str, Declared]]] = {
        "d4rl_adroit": {
            "*": Declared(Source("none", "none for the v0 datasets: the public codes run Adroit v1")),
            **{method: Declared(Source("none", NOT_RETRIEVED)) for method in ("rebrac", "fbrac", "ifql")},
            "qflow": Declared(Source("none", "Q-Flow's D4RL values (qflow_config.py) are for antmaze, which the kit "
                                     "reads but does not evaluate")),
        },
        **{f"d4rl_adroit_{task}": {"fql": Declared(Source("paper", f"{FQL_README} line {line}"),
                                                   {"alpha": alpha, "q_agg": "min", "steps": 500_000})}
           for task, (alpha, line) in FQL_ADROIT.items()},
        "d4rl_mujoco": {"*": Declared(Source("none", "FQL, Q-Flow and value-flows report no locomotion runs"))},
    }  # fmt: skip

    def __init__(self, name: str):
        columns = read_rlds(name)
        super().__init__(name, as_device_arrays(**{key: columns[key] for key in _TRANSITION_COLUMNS}))
        self.environment = ENVIRONMENTS[rlds.split_name(name)[0]]
        self._envs: list[Any] = []

    @classmethod
    def check_data(cls, name: str) -> None:
        """Raise DatasetError if the task's data is not in the TFDS data dir or cannot be read here."""
        rlds.check_readable(name)

    def _environments(self, count: int) -> list[Any]:
        """`count` environments, made once and reused by later evaluations (each reset with its seed)."""
        try:
            import gymnasium
        except ImportError as error:
            raise DatasetError(f"{self.name}: evaluating needs Gymnasium: pip install 'flowkit[d4rl]'") from error
        env_id = self.environment.env_id
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # v4 warns that v5 exists, Adroit about its reward history
            if env_id.startswith("AdroitHand"):
                import gymnasium_robotics

                gymnasium.register_envs(gymnasium_robotics)
                # Door, hammer and relocate's fixed dense rewards are v1 in 1.2.1 to 1.4.2, v2 from 1.4.3 on.
                env_id = env_id.replace("-v1", "-v2") if env_id.replace("-v1", "-v2") in gymnasium.registry else env_id
            while len(self._envs) < count:
                self._envs.append(gymnasium.make(env_id, max_episode_steps=self.environment.max_steps))
        sizes = (self._envs[0].observation_space.shape[0], self._envs[0].action_space.shape[0])
        if sizes != (self.obs_dim, self.action_dim):
            raise DatasetError(
                f"{self.name}: the data has observations of size {self.obs_dim} and actions of size "
                f"{self.action_dim}, but {env_id} has {sizes[0]} and {sizes[1]}"
            )
        return self._envs[:count]

    def _dropped(self, observation: np.ndarray) -> bool:
        """Whether D4RL would end the episode here where the Gymnasium port does not (the pen fell)."""
        if self.environment.ends_below is None:
            return False
        index, height = self.environment.ends_below
        return bool(observation[index] < height)

    def evaluate(self, policy: Policy, key: jax.Array, episodes: int) -> dict[str, float]:
        return self.evaluate_episodes(policy, key, episodes)[0]

    def evaluate_episodes(self, policy: Policy, key: jax.Array, episodes: int) -> tuple[dict[str, float], Episodes]:
        """Run `episodes` episodes in lockstep, one policy call per step on all their observations; a dropped pen
        ends its episode as D4RL's terminal, only the time limit truncates one."""
        seed_key, key = jax.random.split(key)
        seeds = np.asarray(jax.random.randint(seed_key, (episodes,), 0, 2**31 - 1))
        environments = self._environments(episodes)
        observations = np.stack([env.reset(seed=int(seed))[0] for env, seed in zip(environments, seeds, strict=True)])
        first_observations, rewards = observations.copy(), [[] for _ in range(episodes)]
        running, cut = np.ones(episodes, dtype=bool), np.zeros(episodes, dtype=bool)
        step, first_actions = 0, None
        while running.any():
            actions = np.asarray(policy(jnp.asarray(observations, jnp.float32), jax.random.fold_in(key, step)))
            first_actions = actions if first_actions is None else first_actions
            for index in np.flatnonzero(running):
                observation, reward, terminated, truncated, _ = environments[index].step(actions[index])
                observations[index] = observation
                rewards[index].append(float(reward))
                ended = terminated or self._dropped(observation)
                running[index], cut[index] = not (ended or truncated), truncated and not ended
            step += 1
        returns = np.array([sum(r) for r in rewards])
        low, high = self.environment.random_return, self.environment.expert_return
        metrics = {
            "return": float(returns.mean()),
            "normalized_score": float(np.mean(100 * (returns - low) / (high - low))),
        }
        kept = tuple(np.array(r) for r in rewards)
        return metrics, Episodes(first_observations, np.clip(first_actions, -1, 1), kept, cut, observations.copy())


_TRANSITION_COLUMNS = ("observations", "actions", "rewards", "masks", "next_observations", "next_actions")

TASKS: dict[str, type[Task]] = {
    f"{dataset}/{config}": D4RLTask
    for dataset in ENVIRONMENTS
    for config in (MUJOCO_CONFIGS if dataset.startswith("d4rl_mujoco_") else ADROIT_CONFIGS)
}
"""Every D4RL dataset the kit can both read and evaluate, by its TFDS name."""
