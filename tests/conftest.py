"""Shared test settings: tiny networks and short runs, so each training run takes seconds."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import flowkit  # noqa: F401  (selects the JAX backend before anything imports keras)

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
