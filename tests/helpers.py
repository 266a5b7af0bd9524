"""Settings and builders shared by the tests."""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import optuna
import pytest

import flowkit.studies.runner as runner
from flowkit import runs
from flowkit.agents import make_agent
from flowkit.analysis import statistics
from flowkit.run_config import RunConfig, make_run_config, setting_names
from flowkit.studies.study import Study
from flowkit.tasks import load_task

TINY = {
    "actor_hidden": (32, 32),
    "critic_hidden": (32, 32),
    "batch_size": 64,
    "steps": 200,
    "log_every": 100,
    "eval_every": 100,
    "eval_episodes": 200,
}
"""Settings for runs whose numbers do not matter, only their plumbing."""


def tiny_config(agent: str, task: str = "moons", seed: int = 0, **overrides) -> RunConfig:
    """A run of `agent` with the TINY settings it has, and the given overrides."""
    known = setting_names(agent)
    return make_run_config(agent, task, seed, {**{k: v for k, v in TINY.items() if k in known}, **overrides})


def tiny_agent(agent_name: str, task: str = "eight-gaussians", **overrides):
    """An agent with TINY settings, its initial state and one minibatch of the task's data."""
    config = tiny_config(agent_name, task, **overrides)
    dataset_task = load_task(config.task)
    agent = make_agent(config, dataset_task.obs_dim, dataset_task.action_dim)
    batch = dataset_task.dataset.sample(jax.random.PRNGKey(0), config.agent_config.batch_size)
    return agent, agent.init(0), batch


def tiny_study(**changes) -> Study:
    """A two-arm, two-seed FQL study on moons with TINY settings."""
    fields = {
        "name": "tiny",
        "question": "Does the plumbing work?",
        "agents": ("fql",),
        "tasks": ("moons",),
        "grid": {"solver": ("euler", "rk4")},
        "seeds": (0, 1),
        "fixed": TINY,
        "labels": {"solver": {"euler": "Euler", "midpoint": "Midpoint", "rk4": "RK4"}},
    }
    return Study(**{**fields, **changes})


def stored_trials(study: Study, runs_dir: Path) -> list[optuna.trial.FrozenTrial]:
    return runner.load_optuna_study(study, runs_dir).get_trials()


@contextlib.contextmanager
def killed_after(when: Callable[[dict[str, Any]], bool]) -> Iterator[None]:
    """Training inside the block dies (KeyboardInterrupt) right after writing the first metrics record `when`
    accepts, as a run killed there would: its records and checkpoints up to then stand. The block must raise."""
    write = runs.MetricsWriter.write

    def write_then_die(writer: runs.MetricsWriter, record: dict[str, Any]) -> None:
        write(writer, record)
        if when(record):
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runs.MetricsWriter, "write", write_then_die)
        with pytest.raises(KeyboardInterrupt):
            yield


FEW_BOOTSTRAP_SAMPLES = 100
"""Resamples for the reports' bootstrap intervals in tests: the tests check the tables' point estimates and layout,
which the number of resamples leaves unchanged, and 2,000 of them take most of a report's time."""


@contextlib.contextmanager
def few_bootstrap_samples() -> Iterator[None]:
    """Inside the block, stratified_bootstrap defaults to FEW_BOOTSTRAP_SAMPLES resamples, for every module that
    imported it (its default argument is patched, not one module's name for it)."""
    bootstrap = statistics.stratified_bootstrap
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bootstrap, "__kwdefaults__", {**bootstrap.__kwdefaults__, "samples": FEW_BOOTSTRAP_SAMPLES})
        yield
