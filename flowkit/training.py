"""The training loop: compiled chunks of updates, the metrics stream, evaluations and the run folder.

Each dispatch runs `log_every` updates as one jit-compiled lax.scan; minibatches are sampled inside it from
the dataset on the device, so the host only starts chunks, logs their summaries and evaluates. A chunk's
summary is the mean of every per-update metric over the chunk, plus the maximum of each gradient norm.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from tqdm.auto import tqdm

from flowkit import runs, solvers
from flowkit.agents import Agent, TrainState, make_agent
from flowkit.config import FlowConfig, RunConfig
from flowkit.datasets import Task, Transitions, load_task

DATA_STREAM, EVAL_STREAM = 1, 2
"""fold_in tags that give minibatch sampling and evaluation their own random streams per seed."""


class DivergedError(RuntimeError):
    """A loss or metric became NaN or inf; training stopped at that update."""

    def __init__(self, step: int, metrics: list[str]):
        super().__init__(f"diverged at update {step}: {', '.join(metrics)} became non-finite")
        self.step, self.metrics = step, metrics


def make_chunk(agent: Agent, batch_size: int, length: int) -> Callable:
    """A function running `length` updates: (state, dataset, data_key) -> (state, data_key, summary, first_bad)."""

    def chunk(state: TrainState, dataset: Transitions, data_key: jax.Array):
        def one_update(carry, _):
            state, data_key = carry
            data_key, batch_key = jax.random.split(data_key)
            state, metrics = agent.update(state, dataset.sample(batch_key, batch_size))
            return (state, data_key), metrics

        (state, data_key), history = jax.lax.scan(one_update, (state, data_key), None, length=length)
        summary = {name: values.mean() for name, values in history.items()}
        summary.update({f"{name}_max": values.max() for name, values in history.items() if name.startswith("grad_")})
        bad = jnp.any(jnp.stack([~jnp.isfinite(values) for values in history.values()]), axis=0)
        first_bad = jnp.where(bad.any(), jnp.argmax(bad), -1)
        return state, data_key, summary, first_bad

    return chunk


@dataclass
class Trainer:
    """One run's compiled pieces: the agent, its task, the update chunk and the acting policy."""

    config: RunConfig
    task: Task
    agent: Agent

    def __post_init__(self) -> None:
        self._act = jax.jit(self.agent.act)

    @classmethod
    def create(cls, config: RunConfig, task: Task | None = None) -> Trainer:
        task = task or load_task(config.task)
        return cls(config, task, make_agent(config, task.obs_dim, task.action_dim))

    def evaluate(self, params: dict, key: jax.Array) -> dict[str, float]:
        return self.task.evaluate(lambda obs, k: self._act(params, obs, k), key, self.config.train.eval_episodes)


def train(
    config: RunConfig, run_dir: Path, *, progress: bool = True, task: Task | None = None, label: str = ""
) -> dict[str, Any]:
    """Train one run into `run_dir` and return its result (also written to run_dir/result.json)."""
    started = time.perf_counter()
    trainer = Trainer.create(config, task)
    agent, train_config = trainer.agent, config.train
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.write_json_atomic(run_dir / runs.CONFIG, config.to_dict())

    state = agent.init(config.seed)
    seed_key = jax.random.PRNGKey(config.seed)
    data_key = jax.random.fold_in(seed_key, DATA_STREAM)
    dataset = trainer.task.dataset
    compile_started = time.perf_counter()
    chunk = (
        jax.jit(make_chunk(agent, config.agent_config.batch_size, train_config.log_every), donate_argnums=0)
        .lower(state, dataset, data_key)
        .compile()
    )
    compile_s = time.perf_counter() - compile_started

    writer = runs.MetricsWriter(run_dir)
    chunk_seconds: list[float] = []
    eval_history: list[dict[str, Any]] = []
    eval_s = 0.0
    bar = tqdm(total=train_config.steps, desc=label or config.agent, unit="update", disable=not progress, leave=False)
    try:
        for start in range(0, train_config.steps, train_config.log_every):
            chunk_started = time.perf_counter()
            state, data_key, summary, first_bad = chunk(state, dataset, data_key)
            summary = jax.device_get(summary)
            chunk_seconds.append(time.perf_counter() - chunk_started)
            step = start + train_config.log_every
            writer.write(
                {
                    "phase": "train",
                    "step": step,
                    **summary,
                    "time/ms_per_update": 1e3 * chunk_seconds[-1] / train_config.log_every,
                }
            )
            if int(first_bad) >= 0:
                raise DivergedError(
                    start + int(first_bad) + 1, sorted(k for k, v in summary.items() if not jnp.isfinite(v))
                )
            bar.update(train_config.log_every)
            if step % train_config.eval_every == 0 or step == train_config.steps:
                eval_started = time.perf_counter()
                metrics = trainer.evaluate(
                    state.params, jax.random.fold_in(jax.random.fold_in(seed_key, EVAL_STREAM), step)
                )
                eval_s += time.perf_counter() - eval_started
                eval_history.append({"step": step, **metrics})
                writer.write({"phase": "eval", "step": step, **metrics})
                score = metrics[trainer.task.score_metric]
                bar.set_postfix_str(f"{trainer.task.score_metric}={score:.3f}")
    finally:
        bar.close()
        writer.close()

    agent.save(state, run_dir / runs.MODELS)
    agent_config = config.agent_config
    result = {
        "config": config.to_dict(),
        "final": eval_history[-1],
        "eval_history": eval_history,
        "nfe_per_solve": solvers.nfe(agent_config.solver, agent_config.flow_steps)
        if isinstance(agent_config, FlowConfig)
        else 0,
        "timing": {
            "compile_s": compile_s,
            "ms_per_update": 1e3 * statistics.median(chunk_seconds) / train_config.log_every,
            "train_s": sum(chunk_seconds),
            "eval_s": eval_s,
            "wall_s": time.perf_counter() - started,
        },
    }
    runs.write_json_atomic(run_dir / runs.RESULT, result)
    return result
