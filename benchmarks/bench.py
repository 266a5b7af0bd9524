"""`flowkit bench`: what one update costs, measured the same way for every method and for a reference.

Updates are timed as training runs them: in compiled chunks, a lax.scan of updates on minibatches sampled from
a dataset on the device (a single jitted update per call would also time its dispatch and the copies XLA makes
of donated parameters, which training does not pay per update; docs/performance.md#the-benchmarks). Times are
medians over repeated calls after warm-up. The programs compared in one table are compiled first and then
called in turn, call by call, so that all of them see the same machine state and their ratios are taken within
one run. FLOPs come from XLA's cost analysis of each compiled chunk, whose loop body is one update.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from flowkit import solvers
from flowkit._backend import COMPILATION_CACHE_ENV
from flowkit.agents import AGENT_CONFIGS, AGENTS, AgentConfig
from flowkit.agents.fql import FQLConfig
from flowkit.networks import parameter_counts
from flowkit.run_config import RunConfig
from flowkit.settings import ConfigError, TrainConfig
from flowkit.tasks import Transitions
from flowkit.training import CompiledRun, coefficient_arrays, compiled_cost, make_chunk, stack_seeds

DATASET_SIZE = 100_000
"""Transitions in the random dataset the timed chunks sample their minibatches from."""
REFERENCE_IMPLEMENTS = {
    "actor_layer_norm": False,
    "critic_layer_norm": True,
    "q_agg": "mean",
    "normalize_q_loss": False,
}
"""FQL's settings that the pure-JAX reference has fixed, at FQL's defaults; bench step refuses others."""


def random_dataset(key: jax.Array, size: int, obs_dim: int, action_dim: int) -> Transitions:
    keys = jax.random.split(key, 5)
    observations = jax.random.normal(keys[0], (size, obs_dim))
    return Transitions(
        observations=observations,
        actions=jax.random.uniform(keys[1], (size, action_dim), minval=-1, maxval=1),
        rewards=jax.random.normal(keys[2], (size,)),
        masks=jnp.ones(size),
        next_observations=observations + 0.1 * jax.random.normal(keys[3], (size, obs_dim)),
        next_actions=jax.random.uniform(keys[4], (size, action_dim), minval=-1, maxval=1),
    )


def agent_config(agent: str, overrides: dict[str, Any]) -> AgentConfig:
    """A method's settings for a benchmark: its defaults (the papers' sizes) with the given overrides."""
    known = AGENT_CONFIGS[agent].setting_types()
    for name in overrides:
        if name in TrainConfig.setting_types():
            raise ConfigError(f"{name}: a training-loop setting; a benchmark times updates alone and ignores it")
    return AGENT_CONFIGS[agent](**{name: value for name, value in overrides.items() if name in known})


def time_chunks(
    contenders: dict[str, tuple[Callable, Callable, tuple]],
    dataset: Transitions,
    *,
    updates_per_call: int,
    iterations: int,
    warmup: int,
) -> dict[str, dict[str, float]]:
    """Compile each (init, chunk, arguments), then call the chunks in turn; ms per update are medians after warm-up.

    A chunk is what training dispatches: chunk(state, dataset, key, *arguments) runs `updates_per_call` updates in
    one lax.scan, sampling each minibatch from the dataset on the device, and returns (state, key, ...).
    """
    entries = {}
    for name, (init, chunk, arguments) in contenders.items():
        state, key = init(0), jax.random.PRNGKey(0)
        started = time.perf_counter()
        compiled = jax.jit(chunk, donate_argnums=0).lower(state, dataset, key, *arguments).compile()
        compile_s = time.perf_counter() - started
        gflop = compiled_cost(compiled)["gflop_per_update"]
        entries[name] = {
            "carry": (state, key), "arguments": arguments, "call": compiled, "compile_s": compile_s, "gflop": gflop,
            "times": [],
        }  # fmt: skip
    for repeat in range(warmup + iterations):
        for entry in entries.values():
            state, key = entry["carry"]
            started = time.perf_counter()
            state, key, *_ = jax.block_until_ready(entry["call"](state, dataset, key, *entry["arguments"]))
            entry["carry"] = (state, key)
            if repeat >= warmup:
                entry["times"].append((time.perf_counter() - started) / updates_per_call)
    return {
        name: {
            "compile_s": entry["compile_s"],
            "ms_per_update": 1e3 * statistics.median(entry["times"]),
            "ms_iqr": 1e3 * _iqr(entry["times"]),
            "gflop_per_update": entry["gflop"],
            "gflops": entry["gflop"] / statistics.median(entry["times"]),
        }
        for name, entry in entries.items()
    }


def _iqr(values: Sequence[float]) -> float:
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return quartiles[2] - quartiles[0]


def _agent_chunk(
    agent_name: str, config: AgentConfig, obs_dim: int, action_dim: int, updates_per_call: int
) -> tuple[Callable, Callable, tuple]:
    """A method's (init, chunk, arguments) for time_chunks: the training loop's own chunk."""
    agent = AGENTS[agent_name](config, obs_dim, action_dim)
    return agent.init, make_chunk(agent, config.batch_size, updates_per_call), (coefficient_arrays(config),)


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    """Achieved float32 GFLOP/s of one size x size matmul: the machine's practical arithmetic ceiling."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size))
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        matmul(a).block_until_ready()
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(seconds) / 1e9


def bench_step(
    obs_dim: int, action_dim: int, config: FQLConfig, *, updates_per_call: int, iterations: int, warmup: int
) -> dict[str, Any]:
    """Time FQL's update in flowkit's training chunk and in the pure-JAX reference's (benchmarks/reference_fql.py),
    both a lax.scan of `updates_per_call` updates on minibatches sampled from the same dataset."""
    from flowkit.benchmarks.reference_fql import ReferenceFQL

    for name, implemented in REFERENCE_IMPLEMENTS.items():
        if getattr(config, name) != implemented:
            raise ConfigError(
                f"{name}={getattr(config, name)}: the reference update implements only {name}={implemented}, "
                "and bench step compares the same mathematics"
            )
    reference = ReferenceFQL(
        obs_dim, action_dim, config.actor_hidden, config.critic_hidden, solver=config.solver,
        flow_steps=config.flow_steps, alpha=config.alpha, lr=config.lr, discount=config.discount, tau=config.tau,
    )  # fmt: skip
    dataset = random_dataset(jax.random.PRNGKey(1), DATASET_SIZE, obs_dim, action_dim)
    timed = time_chunks(
        {
            "flowkit": _agent_chunk("fql", config, obs_dim, action_dim, updates_per_call),
            "reference": (reference.init, reference.chunk(config.batch_size, updates_per_call), ()),
        },
        dataset,
        updates_per_call=updates_per_call,
        iterations=iterations,
        warmup=warmup,
    )
    peak = matmul_peak_gflops()
    for entry in timed.values():
        entry["share_of_peak"] = entry["gflops"] / peak
    return {
        "obs_dim": obs_dim, "action_dim": action_dim, "batch_size": config.batch_size,
        "hidden": list(config.actor_hidden), "solver": config.solver, "flow_steps": config.flow_steps,
        "nfe_per_solve": solvers.nfe(config.solver, config.flow_steps), "updates_per_call": updates_per_call,
        "iterations": iterations, "matmul_peak_gflops": peak, "device": jax.devices()[0].device_kind, **timed,
        "ratio": timed["flowkit"]["ms_per_update"] / timed["reference"]["ms_per_update"],
    }  # fmt: skip


def bench_methods(
    agents: Sequence[str],
    flow_steps: Sequence[int],
    solver_names: Sequence[str],
    overrides: dict[str, Any],
    *,
    obs_dim: int,
    action_dim: int,
    updates_per_call: int,
    iterations: int,
    warmup: int,
) -> list[dict[str, Any]]:
    """One row per (method, solver, K): ms per update in a training chunk, GFLOP and NFE; each method's rows
    timed interleaved."""
    rows = []
    for agent in agents:
        settings = {}
        for solver in solver_names:
            for steps in flow_steps:
                config = agent_config(agent, {**overrides, "solver": solver, "flow_steps": steps})
                settings[(solver, steps)] = config
        dataset = random_dataset(jax.random.PRNGKey(1), DATASET_SIZE, obs_dim, action_dim)
        contenders = {
            key: _agent_chunk(agent, config, obs_dim, action_dim, updates_per_call) for key, config in settings.items()
        }
        timed = time_chunks(
            contenders, dataset, updates_per_call=updates_per_call, iterations=iterations, warmup=warmup
        )
        counts = parameter_counts(AGENTS[agent](next(iter(settings.values())), obs_dim, action_dim).models)
        for (solver, steps), timing in timed.items():
            rows.append(
                {
                    "agent": agent,
                    "solver": solver,
                    "flow_steps": steps,
                    "nfe_per_solve": solvers.nfe(solver, steps),
                    **timing,
                    "parameters": counts,
                }
            )
    return rows


def _chunk_compile_seconds(run_config: dict[str, Any], cache_dir: str, trials: int) -> list[float]:
    """In this process, with the persistent cache at `cache_dir`: seconds from a new trial's CompiledRun (new agent and
    Keras models) to its compiled training chunk, for `trials` trials one after another, as a worker runs them."""
    os.environ[COMPILATION_CACHE_ENV] = cache_dir
    config = RunConfig.from_dict(run_config)
    seconds = []
    for _ in range(trials):
        compiled = CompiledRun.create(config)
        state = compiled.agent.init(config.seed)
        started = time.perf_counter()
        compiled.compiled_chunk(state, jax.random.PRNGKey(config.seed))
        seconds.append(time.perf_counter() - started)
    return seconds


def _in_fresh_process(function: Callable, *args: Any) -> Any:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def bench_compile(config: RunConfig) -> dict[str, Any]:
    """Time to a trial's compiled training chunk: with an empty persistent cache (tracing, lowering and XLA's
    compilation), for the next trial in the same process (the chunk the process kept), and in a fresh process
    with the cache the first left (a trial of another worker: the executable loaded from the cache folder)."""
    with tempfile.TemporaryDirectory(prefix="flowkit-compile-bench-") as cache_dir:
        cold_s, same_process_s = _in_fresh_process(_chunk_compile_seconds, config.to_dict(), cache_dir, 2)
        (fresh_process_s,) = _in_fresh_process(_chunk_compile_seconds, config.to_dict(), cache_dir, 1)
        cache_mb = sum(entry.stat().st_size for entry in Path(cache_dir).rglob("*") if entry.is_file()) / 2**20
    return {
        "agent": config.agent, "task": config.task, "hidden": list(config.agent_config.actor_hidden),
        "log_every": config.train.log_every, "cold_s": cold_s, "same_process_s": same_process_s,
        "fresh_process_s": fresh_process_s, "cache_mb": cache_mb, "load_average": os.getloadavg()[0],
        "same_process_ratio": same_process_s / cold_s, "fresh_process_ratio": fresh_process_s / cold_s,
    }  # fmt: skip


def bench_seeds(config: RunConfig, seeds: int, *, iterations: int, warmup: int) -> dict[str, Any]:
    """ms per update per seed of `seeds` runs' training chunks as one vmapped program and as one program per
    run called one after another, the two timed in turn; medians after warm-up."""
    compiled = CompiledRun.create(config)
    dataset, length = compiled.task.dataset, config.train.log_every
    states = [compiled.agent.init(seed) for seed in range(seeds)]
    keys = [jax.random.PRNGKey(seed) for seed in range(seeds)]
    single = compiled.compiled_chunk(states[0], keys[0])
    batched_state, batched_keys = stack_seeds(states), stack_seeds(keys)
    vectorized = compiled.compiled_chunk(batched_state, batched_keys, vectorized=True)
    times: dict[str, list[float]] = {"one_program": [], "sequential": []}
    for repeat in range(warmup + iterations):
        started = time.perf_counter()
        batched_state, batched_keys, *_ = jax.block_until_ready(vectorized(batched_state, dataset, batched_keys))
        middle = time.perf_counter()
        for index in range(seeds):
            states[index], keys[index], *_ = jax.block_until_ready(single(states[index], dataset, keys[index]))
        if repeat >= warmup:
            times["one_program"].append(middle - started)
            times["sequential"].append(time.perf_counter() - middle)
    ms = {name: 1e3 * statistics.median(values) / (seeds * length) for name, values in times.items()}
    return {
        "agent": config.agent, "task": config.task, "hidden": list(config.agent_config.actor_hidden),
        "batch_size": config.agent_config.batch_size, "seeds": seeds, "updates_per_call": length,
        "iterations": iterations, "device": jax.devices()[0].device_kind,
        "ms_per_update_per_seed": ms, "speedup": ms["sequential"] / ms["one_program"],
        "load_average": os.getloadavg()[0],
    }  # fmt: skip


def bench_evaluation(config: RunConfig, episodes: int, *, iterations: int) -> dict[str, Any]:
    """Environment steps per second of a run's evaluation (its compiled policy acting on all episodes' observations
    in one call per step) against the same environments stepped with random actions and no policy, the two timed
    in turn after one warm-up evaluation; medians."""
    from flowkit.tasks.ogbench_tasks import LOCKSTEP_ENVIRONMENTS, SingleTask

    compiled = CompiledRun.create(config)
    task = compiled.task
    if not isinstance(task, SingleTask):
        raise ConfigError(f"--task: {config.task!r} is not an OGBench single-task name (flowkit data list)")
    policy = compiled.policy(compiled.agent.init(config.seed).params)
    task.evaluate(policy, jax.random.PRNGKey(0), episodes)
    envs = task.environments(min(episodes, LOCKSTEP_ENVIRONMENTS))
    rates: dict[str, list[float]] = {"evaluation": [], "raw": []}
    for repeat in range(iterations):
        started = time.perf_counter()
        metrics = task.evaluate(policy, jax.random.PRNGKey(1 + repeat), episodes)
        steps = metrics.get("episode_length", 0.0) * episodes
        rates["evaluation"].append(steps / (time.perf_counter() - started))
        rates["raw"].append(_raw_steps_per_second(envs, int(steps)))
    rate = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "task": config.task, "episodes": episodes, "lockstep": len(envs),
        "hidden": list(config.agent_config.actor_hidden),
        "iterations": iterations, "steps_per_second": rate, "share_of_raw": rate["evaluation"] / rate["raw"],
        "load_average": os.getloadavg()[0],
    }  # fmt: skip


def _raw_steps_per_second(envs: list[Any], steps: int) -> float:
    """The environments' own speed: `steps` steps in all, round-robin, random actions, resetting ended episodes."""
    for env in envs:
        env.reset(seed=0)
    started = time.perf_counter()
    for step in range(steps):
        env = envs[step % len(envs)]
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - started)
