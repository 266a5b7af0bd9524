"""The training loop: compiled chunks of updates, the metrics stream, evaluations and the run folder.

Each dispatch runs `log_every` updates as one jit-compiled lax.scan; minibatches are sampled inside it from
the dataset on the device, so the host only starts chunks, logs their summaries and evaluates. A chunk's
summary is the mean of every per-update metric over the chunk, plus the maximum of each gradient norm.
Runs that differ only in seed can train as one program, the chunk vmapped over their states and keys.
Every evaluation of a flow method with a critic also probes the consistency of its value along the flow.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections import OrderedDict
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
from flowkit._backend import stored_executable, use_compilation_cache
from flowkit.agents import Agent, AgentConfig, FlowConfig, TrainState, make_agent
from flowkit.agents.base import Params
from flowkit.agents.common import CONSISTENCY_STATES, flow_value_gaps
from flowkit.run_config import RunConfig
from flowkit.settings import ConfigError
from flowkit.tasks import Task, Transitions, load_task

DATA_STREAM, EVAL_STREAM = 1, 2
"""fold_in tags that give minibatch sampling and evaluation their own random streams per seed."""

CHUNKS_KEPT = 4
"""Compiled training chunks a process keeps for its later runs (a cell's other seeds, the next trial)."""
_compiled_chunks: OrderedDict[tuple, jax.stages.Compiled] = OrderedDict()


def forget_compiled_chunks() -> None:
    """Drop the chunks this process kept: needed only after changing an agent's code in a running process
    (a monkeypatched loss), which the kept programs, traced before, would not see."""
    _compiled_chunks.clear()


class DivergedError(RuntimeError):
    """A loss or metric became NaN or inf; training stopped at that update."""

    def __init__(self, step: int, metrics: list[str], seed: int | None = None):
        super().__init__(f"diverged at update {step}: {', '.join(metrics)} became non-finite")
        self.step, self.metrics, self.seed = step, metrics, seed


class RunTakenOverError(RuntimeError):
    """Another process took the run over (a study worker whose trial was given to another worker): this one
    stops before writing anything more into its folder."""


def _check_still_ours(still_ours: Callable[[], bool] | None, run_dirs: list[Path]) -> None:
    if still_ours is not None and not still_ours():
        raise RunTakenOverError(f"{', '.join(map(str, run_dirs))}: taken over by another process; stopped writing")


def make_chunk(agent: Agent, batch_size: int, length: int, term_grad_norms: bool = False) -> Callable:
    """A function running `length` updates: (state, dataset, data_key, coefficients) -> (state, data_key, summary,
    first_bad); `coefficients` holds the values of agent.config.coefficients(), arguments rather than constants."""

    def chunk(state: TrainState, dataset: Transitions, data_key: jax.Array, coefficients: dict[str, jax.Array]):
        traced = agent.with_coefficients(coefficients)

        def one_update(carry, _):
            state, data_key = carry
            data_key, batch_key = jax.random.split(data_key)
            state, metrics = traced.update(state, dataset.sample(batch_key, batch_size), term_grad_norms)
            return (state, data_key), metrics

        (state, data_key), history = jax.lax.scan(one_update, (state, data_key), None, length=length)
        summary = {name: values.mean() for name, values in history.items()}
        summary.update({f"{name}_max": values.max() for name, values in history.items() if name.startswith("grad_")})
        bad = jnp.any(jnp.stack([~jnp.isfinite(values) for values in history.values()]), axis=0)
        first_bad = jnp.where(bad.any(), jnp.argmax(bad), -1)
        return state, data_key, summary, first_bad

    return chunk


def coefficient_arrays(config: AgentConfig) -> dict[str, jax.Array]:
    """The values a chunk takes for the method's coefficients, as float32 arrays."""
    return {name: jnp.float32(value) for name, value in config.coefficients().items()}


@dataclass(frozen=True)
class Chunk:
    """A compiled training chunk and the coefficient values of the runs it trains."""

    compiled: jax.stages.Compiled
    coefficients: dict[str, jax.Array]

    def __call__(self, state: TrainState, dataset: Transitions, data_key: jax.Array) -> tuple:
        return self.compiled(state, dataset, data_key, self.coefficients)


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
        use_compilation_cache()
        task = task or load_task(config.task)
        return cls(config, task, make_agent(config, task.obs_dim, task.action_dim))

    def compiled_chunk(self, state: TrainState, data_key: jax.Array, *, vectorized: bool = False) -> Chunk:
        """The training chunk compiled for these shapes; `vectorized` maps it over a leading seed axis of the
        state and key, the dataset and coefficients shared.

        The process keeps the last CHUNKS_KEPT programs, keyed by everything the traced program depends on (the
        method and its settings but the coefficients, the loop's settings, the arguments' structure, shapes and
        dtypes), so that a later run of the same program (another seed, the next trial, another alpha) starts
        training without tracing the Keras models again. Other processes (workers, the next study run) load
        it from the cache folder under the same key (stored_executable); any other is traced and compiled.
        """
        config, train_config = self.agent.config, self.config.train
        coefficients = coefficient_arrays(config)
        arguments = (state, self.task.dataset, data_key, coefficients)
        key = (
            f"{type(self.agent).__module__}.{type(self.agent).__qualname__}",
            tuple((item.name, getattr(config, item.name)) for item in dataclasses.fields(config)
                  if item.name not in coefficients),
            self.agent.obs_dim,
            self.agent.action_dim,
            train_config.log_every,
            train_config.term_grad_norms,
            vectorized,
            jax.tree.structure(arguments),
            tuple(jax.typeof(leaf) for leaf in jax.tree.leaves(arguments)),
        )  # fmt: skip
        if key in _compiled_chunks:
            _compiled_chunks.move_to_end(key)
        else:

            def compile_chunk() -> jax.stages.Compiled:
                chunk = make_chunk(self.agent, config.batch_size, train_config.log_every, train_config.term_grad_norms)
                if vectorized:
                    chunk = jax.vmap(chunk, in_axes=(0, None, 0, None))
                return jax.jit(chunk, donate_argnums=0).lower(*arguments).compile()

            _compiled_chunks[key] = stored_executable(repr(key), compile_chunk)
            while len(_compiled_chunks) > CHUNKS_KEPT:
                _compiled_chunks.popitem(last=False)
        return Chunk(_compiled_chunks[key], coefficients)

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
    config: RunConfig,
    run_dir: Path,
    *,
    progress: bool = True,
    task: Task | None = None,
    label: str = "",
    still_ours: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train one run into `run_dir` and return its result (also written to run_dir/result.json).

    A run folder holding a checkpoint (of a run with these settings, killed or interrupted) is resumed from
    it; the result equals that of an uninterrupted run with the same seed. `still_ours`, if given, is asked
    before the folder is first written, after every chunk and before the models and result are saved; once it
    answers False, RunTakenOverError is raised and nothing more is written.
    """
    return train_seeds([config], [run_dir], progress=progress, task=task, label=label, still_ours=still_ours)[0]


@dataclass
class _Run:
    """One seed's part of a training program: its settings, folder, random streams and loop progress."""

    config: RunConfig
    run_dir: Path
    state: TrainState
    data_key: jax.Array
    loop: dict[str, Any]
    checkpointed: bool
    earlier_wall_s: float = 0.0
    earlier_compile_s: float = 0.0

    @property
    def seed_key(self) -> jax.Array:
        return jax.random.PRNGKey(self.config.seed)


def _stored_checkpoint(config: RunConfig, run_dir: Path) -> tuple[list[np.ndarray], dict[str, Any]] | None:
    """The checkpoint the run resumes from, if its folder holds one of these settings. A folder holding a
    completed run or a checkpoint of other settings is refused, before anything in it is written."""
    if (run_dir / runs.RESULT).exists():
        raise ConfigError(f"run folder {run_dir} holds a completed run ({runs.RESULT}); move it away to rerun")
    checkpoint = runs.load_checkpoint(run_dir)
    if checkpoint is not None and checkpoint[1]["config"] != config.to_dict():
        raise ConfigError(f"run folder {run_dir} holds a checkpoint of other settings; move it away to rerun")
    return checkpoint


def _start_run(
    agent: Agent, config: RunConfig, run_dir: Path, checkpoint: tuple[list[np.ndarray], dict[str, Any]] | None
) -> _Run:
    """A run's initial state and data key, or those of its checkpoint; writes its config.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.write_json_atomic(run_dir / runs.CONFIG, config.to_dict())
    state = agent.init(config.seed)
    data_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), DATA_STREAM)
    loop = {"config": config.to_dict(), "step": 0, "eval_history": [], "chunk_seconds": [], "eval_s": 0.0}
    if checkpoint is not None:
        leaves, loop = checkpoint
        state, data_key = jax.tree.unflatten(jax.tree.structure((state, data_key)), leaves)
    loop.setdefault("checkpoint_s", 0.0)
    earlier = (loop.get("wall_s", 0.0), loop.get("compile_s", 0.0))  # the killed processes' time, to the checkpoint
    return _Run(config, run_dir, state, data_key, loop, checkpoint is not None, *earlier)


def train_seeds(
    configs: list[RunConfig],
    run_dirs: list[Path],
    *,
    progress: bool = True,
    task: Task | None = None,
    label: str = "",
    still_ours: Callable[[], bool] | None = None,
) -> list[dict[str, Any]]:
    """Train runs that differ only in their seed as one program, vmapped over the seeds (the dataset shared),
    each into its own folder exactly as `train` would; one run is not vmapped.

    Results equal separate runs' up to float rounding. The program's compile, training and wall time are
    shared equally among the seeds' timings (so sums over seeds are the program's); evaluations, checkpoints
    and saving are timed per seed. All runs must resume from the same step. `still_ours` is as for `train`.
    """
    started = time.perf_counter()
    config = configs[0]
    if any(dataclasses.replace(other, seed=config.seed) != config for other in configs):
        raise ValueError("runs trained as one program must differ only in their seed")
    folders = list(zip(configs, run_dirs, strict=True))
    checkpoints = [_stored_checkpoint(run_config, run_dir) for run_config, run_dir in folders]
    _check_still_ours(still_ours, run_dirs)
    trainer = Trainer.create(config, task)
    agent, train_config, count = trainer.agent, config.train, len(configs)
    seed_runs = [_start_run(agent, *folder, stored) for folder, stored in zip(folders, checkpoints, strict=True)]
    resumed_from = seed_runs[0].loop["step"]
    if any(run.loop["step"] != resumed_from for run in seed_runs):
        raise ValueError("runs trained as one program must resume from the same step; train them one by one")
    if count == 1:
        state, data_key = seed_runs[0].state, seed_runs[0].data_key
    else:
        state, data_key = (
            stack_seeds([run.state for run in seed_runs]),
            stack_seeds([run.data_key for run in seed_runs]),
        )
    dataset = trainer.task.dataset
    compile_started = time.perf_counter()
    chunk = trainer.compiled_chunk(state, data_key, vectorized=count > 1)
    compile_s = time.perf_counter() - compile_started

    writers = [
        runs.MetricsWriter(run.run_dir, resume_step=resumed_from if run.checkpointed else None) for run in seed_runs
    ]
    bar = tqdm(
        total=train_config.steps, initial=resumed_from, desc=label or config.agent, unit="update",
        disable=not progress, leave=False,
    )  # fmt: skip
    try:
        for start in range(resumed_from, train_config.steps, train_config.log_every):
            chunk_started = time.perf_counter()
            state, data_key, summary, first_bad = chunk(state, dataset, data_key)
            outcomes = _per_seed(jax.device_get((summary, first_bad)), count)
            _check_still_ours(still_ours, run_dirs)
            seconds = (time.perf_counter() - chunk_started) / count
            step = start + train_config.log_every
            for run, writer, (seed_summary, seed_first_bad) in zip(seed_runs, writers, outcomes, strict=True):
                seed_summary = shared_term_norms(seed_summary)
                run.loop["chunk_seconds"].append(seconds)
                ms_per_update = 1e3 * seconds / train_config.log_every
                writer.write({"phase": "train", "step": step, **seed_summary, "time/ms_per_update": ms_per_update})
                if int(seed_first_bad) >= 0:
                    bad = sorted(name for name, value in seed_summary.items() if not np.isfinite(value))
                    raise DivergedError(start + int(seed_first_bad) + 1, bad, run.config.seed)
            bar.update(train_config.log_every)
            evaluate = step % train_config.eval_every == 0 or step == train_config.steps
            checkpoint = step % train_config.checkpoint_every == 0 and step < train_config.steps
            if not (evaluate or checkpoint):
                continue
            seed_states = _per_seed(state, count)
            seed_keys = _per_seed(data_key, count)
            for run, writer, seed_state, seed_data_key in zip(seed_runs, writers, seed_states, seed_keys, strict=True):
                if evaluate:
                    eval_started = time.perf_counter()
                    eval_key = jax.random.fold_in(jax.random.fold_in(run.seed_key, EVAL_STREAM), step)
                    metrics = trainer.evaluate(seed_state.params, eval_key)
                    run.loop["eval_s"] += time.perf_counter() - eval_started
                    run.loop["eval_history"].append({"step": step, **metrics})
                    writer.write({"phase": "eval", "step": step, **metrics})
                    bar.set_postfix_str(f"{trainer.task.score_metric}={metrics[trainer.task.score_metric]:.3f}")
                if checkpoint:
                    checkpoint_started = time.perf_counter()
                    run.loop["step"] = step
                    run.loop["wall_s"] = run.earlier_wall_s + (checkpoint_started - started) / count
                    run.loop["compile_s"] = run.earlier_compile_s + compile_s / count
                    leaves = jax.tree.leaves(jax.device_get((seed_state, seed_data_key)))
                    runs.save_checkpoint(run.run_dir, leaves, run.loop)
                    run.loop["checkpoint_s"] += time.perf_counter() - checkpoint_started
    finally:
        bar.close()
        for writer in writers:
            writer.close()

    _check_still_ours(still_ours, run_dirs)
    for run, seed_state in zip(seed_runs, _per_seed(state, count), strict=True):
        agent.save(seed_state, run.run_dir / runs.MODELS)
        trainer.task.record(
            trainer.policy(seed_state.params), jax.random.fold_in(run.seed_key, EVAL_STREAM), run.run_dir
        )
    agent_config = config.agent_config
    cost = compiled_cost(chunk.compiled)
    cost["gflop_per_update"] /= count
    wall_s = (time.perf_counter() - started) / count
    results = []
    for run in seed_runs:
        per_update_s = [seconds / train_config.log_every for seconds in run.loop["chunk_seconds"]]
        timing = {
            "compile_s": run.earlier_compile_s + compile_s / count,
            "ms_per_update": 1e3 * statistics.median(per_update_s),
            "ms_per_update_iqr": 1e3 * _iqr(per_update_s),
            "train_s": sum(run.loop["chunk_seconds"]),
            "eval_s": run.loop["eval_s"],
            "checkpoint_s": run.loop["checkpoint_s"],
            "wall_s": run.earlier_wall_s + wall_s,
            "resumed_from_step": resumed_from,
            "seeds_in_program": count,
        }
        timing["other_s"] = max(0.0, timing["wall_s"] - timing["compile_s"] - timing["train_s"] - timing["eval_s"])
        result = {
            "config": run.config.to_dict(),
            "final": run.loop["eval_history"][-1],
            "eval_history": run.loop["eval_history"],
            "nfe_per_solve": solvers.nfe(agent_config.solver, agent_config.flow_steps)
            if isinstance(agent_config, FlowConfig)
            else 0,
            "timing": timing,
            "cost": cost,
            "policy_network": agent.policy_network,
        }
        _check_still_ours(still_ours, run_dirs)
        runs.write_json_atomic(run.run_dir / runs.RESULT, result)
        (run.run_dir / runs.CHECKPOINT).unlink(missing_ok=True)
        results.append(result)
    return results


def stack_seeds(trees: list[Any]) -> Any:
    """Per-seed pytrees (states, keys) as one pytree with a leading seed axis, as a vmapped chunk takes them."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _per_seed(tree: Any, count: int) -> list[Any]:
    """A program's outputs split by seed: as they are for one run, else sliced along the vmapped axis."""
    if count == 1:
        return [tree]
    return [jax.tree.map(lambda leaf, index=index: leaf[index], tree) for index in range(count)]


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
