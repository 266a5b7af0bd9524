"""The training loop: compiled chunks of updates, the metrics stream, evaluations and the run folder.

Each dispatch runs `log_every` updates as one jit-compiled lax.scan; minibatches are sampled inside it from
the dataset on the device, so the host only starts chunks, logs their summaries and evaluates. A chunk's
summary is the mean of every per-update metric over the chunk, plus the maximum of each gradient norm.
Every evaluation of a flow method with a critic also probes the consistency of its value along the flow.
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
import keras
import numpy as np
from tqdm.auto import tqdm

from flowkit import runs, solvers
from flowkit.agents import Agent, TrainState, make_agent
from flowkit.agents.base import Params
from flowkit.agents.common import CONSISTENCY_STATES, flow_value_gaps
from flowkit.config import ConfigError, FlowConfig, RunConfig
from flowkit.datasets import Task, Transitions, load_task

DATA_STREAM, EVAL_STREAM = 1, 2
"""fold_in tags that give minibatch sampling and evaluation their own random streams per seed."""


class DivergedError(RuntimeError):
    """A loss or metric became NaN or inf; training stopped at that update."""

    def __init__(self, step: int, metrics: list[str]):
        super().__init__(f"diverged at update {step}: {', '.join(metrics)} became non-finite")
        self.step, self.metrics = step, metrics


def make_chunk(agent: Agent, batch_size: int, length: int, term_grad_norms: bool = False) -> Callable:
    """A function running `length` updates: (state, dataset, data_key) -> (state, data_key, summary, first_bad)."""

    def chunk(state: TrainState, dataset: Transitions, data_key: jax.Array):
        def one_update(carry, _):
            state, data_key = carry
            data_key, batch_key = jax.random.split(data_key)
            state, metrics = agent.update(state, dataset.sample(batch_key, batch_size), term_grad_norms)
            return (state, data_key), metrics

        (state, data_key), history = jax.lax.scan(one_update, (state, data_key), None, length=length)
        summary = {name: values.mean() for name, values in history.items()}
        summary.update({f"{name}_max": values.max() for name, values in history.items() if name.startswith("grad_")})
        bad = jnp.any(jnp.stack([~jnp.isfinite(values) for values in history.values()]), axis=0)
        first_bad = jnp.where(bad.any(), jnp.argmax(bad), -1)
        return state, data_key, summary, first_bad

    return chunk


def shared_term_norms(summary: dict[str, float]) -> dict[str, float]:
    """Keep a loss term's gradient norm on a network only where several terms train that network."""
    terms: dict[str, set[str]] = {}
    for name, value in summary.items():
        parts = name.removesuffix("_max").split("/")
        if len(parts) == 3 and parts[0] == "grad_norm" and value != 0:
            terms.setdefault(parts[1], set()).add(parts[2])
    return {
        name: value
        for name, value in summary.items()
        if not (name.startswith("grad_norm/") and name.count("/") == 2) or len(terms.get(name.split("/")[1], ())) > 1
    }


@dataclass
class Trainer:
    """One run's compiled pieces: the agent, its task, the acting policy and the consistency probe."""

    config: RunConfig
    task: Task
    agent: Agent

    def __post_init__(self) -> None:
        self._act = jax.jit(self.agent.act)
        self._gaps = jax.jit(lambda params, s, noise: flow_value_gaps(self.agent, params, s, noise))

    @classmethod
    def create(cls, config: RunConfig, task: Task | None = None) -> Trainer:
        task = task or load_task(config.task)
        return cls(config, task, make_agent(config, task.obs_dim, task.action_dim))

    @property
    def probes_consistency(self) -> bool:
        return {"flow", "critic"} <= set(self.agent.models)

    def policy(self, params: Params) -> Callable[[jax.Array, jax.Array], jax.Array]:
        return lambda observations, key: self._act(params, observations, key)

    def evaluate(self, params: Params, key: jax.Array) -> dict[str, Any]:
        """The task's metrics and, for flow methods with a critic, the value gaps along the flow per tau."""
        policy_key, probe_key = jax.random.split(key)
        metrics: dict[str, Any] = self.task.evaluate(self.policy(params), policy_key, self.config.train.eval_episodes)
        if self.probes_consistency:
            metrics["consistency"] = consistency_record(self.consistency_gaps(params, probe_key))
        return metrics

    def consistency_gaps(self, params: Params, key: jax.Array, states: int = CONSISTENCY_STATES) -> jax.Array:
        """Value gaps (K + 1, states) along the policy's flow from the data's observations, each with its noise."""
        index_key, noise_key = jax.random.split(key)
        observations = self.task.dataset.sample(index_key, states).observations
        noise = jax.random.normal(noise_key, (states, self.agent.action_dim))
        return self._gaps(params, observations, noise)


def consistency_record(gaps: jax.Array) -> dict[str, Any]:
    """Value gaps of shape (K + 1, states) as an evaluation records them: per tau, mean, std and count."""
    gaps = np.asarray(gaps, dtype=float)
    return {
        "tau": np.linspace(0, 1, len(gaps)).tolist(),
        "mean": gaps.mean(axis=1).tolist(),
        "std": gaps.std(axis=1, ddof=1).tolist(),
        "n": gaps.shape[1],
    }


def load_trained(run_dir: Path) -> tuple[Trainer, Params]:
    """A finished run's trainer and trained variables, rebuilt from its config.json and models/*.keras."""
    config = RunConfig.from_dict(runs.read_json(run_dir / runs.CONFIG))
    trainer = Trainer.create(config)
    params = {}
    for name in trainer.agent.models:
        saved = keras.saving.load_model(run_dir / runs.MODELS / f"{name}.keras")
        params[name] = [jnp.asarray(variable.value) for variable in saved.trainable_variables]
    return trainer, params


def train(
    config: RunConfig, run_dir: Path, *, progress: bool = True, task: Task | None = None, label: str = ""
) -> dict[str, Any]:
    """Train one run into `run_dir` and return its result (also written to run_dir/result.json).

    A run folder holding a checkpoint (of a run with these settings, killed or interrupted) is resumed from
    it; the result equals that of an uninterrupted run with the same seed.
    """
    started = time.perf_counter()
    trainer = Trainer.create(config, task)
    agent, train_config = trainer.agent, config.train
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.write_json_atomic(run_dir / runs.CONFIG, config.to_dict())

    state = agent.init(config.seed)
    seed_key = jax.random.PRNGKey(config.seed)
    data_key = jax.random.fold_in(seed_key, DATA_STREAM)
    loop = {"config": config.to_dict(), "step": 0, "eval_history": [], "chunk_seconds": [], "eval_s": 0.0}
    checkpoint = runs.load_checkpoint(run_dir)
    if checkpoint is not None:
        leaves, loop = checkpoint
        if loop["config"] != config.to_dict():
            raise ConfigError(f"run folder {run_dir} holds a checkpoint of other settings; move it away to rerun")
        state, data_key = jax.tree.unflatten(jax.tree.structure((state, data_key)), leaves)
    resumed_from = loop["step"]
    dataset = trainer.task.dataset
    compile_started = time.perf_counter()
    chunk = (
        jax.jit(
            make_chunk(agent, config.agent_config.batch_size, train_config.log_every, train_config.term_grad_norms),
            donate_argnums=0,
        )
        .lower(state, dataset, data_key)
        .compile()
    )
    compile_s = time.perf_counter() - compile_started

    writer = runs.MetricsWriter(run_dir, resume_step=resumed_from if checkpoint is not None else None)
    chunk_seconds: list[float] = loop["chunk_seconds"]
    eval_history: list[dict[str, Any]] = loop["eval_history"]
    bar = tqdm(
        total=train_config.steps, initial=resumed_from, desc=label or config.agent, unit="update",
        disable=not progress, leave=False,
    )  # fmt: skip
    try:
        for start in range(resumed_from, train_config.steps, train_config.log_every):
            chunk_started = time.perf_counter()
            state, data_key, summary, first_bad = chunk(state, dataset, data_key)
            summary = shared_term_norms(jax.device_get(summary))
            chunk_seconds.append(time.perf_counter() - chunk_started)
            step = start + train_config.log_every
            ms_per_update = 1e3 * chunk_seconds[-1] / train_config.log_every
            writer.write({"phase": "train", "step": step, **summary, "time/ms_per_update": ms_per_update})
            if int(first_bad) >= 0:
                bad = sorted(name for name, value in summary.items() if not np.isfinite(value))
                raise DivergedError(start + int(first_bad) + 1, bad)
            bar.update(train_config.log_every)
            if step % train_config.eval_every == 0 or step == train_config.steps:
                eval_started = time.perf_counter()
                eval_key = jax.random.fold_in(jax.random.fold_in(seed_key, EVAL_STREAM), step)
                metrics = trainer.evaluate(state.params, eval_key)
                loop["eval_s"] += time.perf_counter() - eval_started
                eval_history.append({"step": step, **metrics})
                writer.write({"phase": "eval", "step": step, **metrics})
                bar.set_postfix_str(f"{trainer.task.score_metric}={metrics[trainer.task.score_metric]:.3f}")
            if step % train_config.checkpoint_every == 0 and step < train_config.steps:
                loop["step"] = step
                runs.save_checkpoint(run_dir, jax.tree.leaves(jax.device_get((state, data_key))), loop)
    finally:
        bar.close()
        writer.close()

    agent.save(state, run_dir / runs.MODELS)
    trainer.task.record(trainer.policy(state.params), jax.random.fold_in(seed_key, EVAL_STREAM), run_dir)
    agent_config = config.agent_config
    per_update_s = [seconds / train_config.log_every for seconds in chunk_seconds]
    result = {
        "config": config.to_dict(),
        "final": eval_history[-1],
        "eval_history": eval_history,
        "nfe_per_solve": solvers.nfe(agent_config.solver, agent_config.flow_steps)
        if isinstance(agent_config, FlowConfig)
        else 0,
        "timing": {
            "compile_s": compile_s,
            "ms_per_update": 1e3 * statistics.median(per_update_s),
            "ms_per_update_iqr": 1e3 * _iqr(per_update_s),
            "train_s": sum(chunk_seconds),
            "eval_s": loop["eval_s"],
            "wall_s": time.perf_counter() - started,
            "resumed_from_step": resumed_from,
        },
        "cost": compiled_cost(chunk),
    }
    runs.write_json_atomic(run_dir / runs.RESULT, result)
    (run_dir / runs.CHECKPOINT).unlink(missing_ok=True)
    return result


def _iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    quartiles = statistics.quantiles(values, n=4)
    return quartiles[2] - quartiles[0]


def compiled_cost(compiled: Any) -> dict[str, float]:
    """GFLOP per update and peak device memory of a compiled training chunk.

    XLA's cost analysis counts a loop's body once, so the chunk's FLOPs are one update's (tested against a
    single compiled update). Peak memory is the memory analysis' arguments, outputs and temporaries, less
    the donated buffers that outputs reuse.
    """
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    memory = compiled.memory_analysis()
    peak = (
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        + memory.temp_size_in_bytes
        - memory.alias_size_in_bytes
    )
    return {"gflop_per_update": cost.get("flops", 0.0) / 1e9, "peak_memory_mb": peak / 2**20}
