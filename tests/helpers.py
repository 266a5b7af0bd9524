"""Settings and builders shared by the tests."""

from pathlib import Path

import optuna

import studies.runner as runner
from studies.study import Study

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
        "labels": {"solver": {"euler": "Euler", "rk4": "RK4"}},
    }
    return Study(**{**fields, **changes})


def stored_trials(study: Study, runs_dir: Path) -> list[optuna.trial.FrozenTrial]:
    return runner.load_optuna_study(study, runs_dir).get_trials()
