"""`flowkit bench`: what one update costs, measured the same way for every method and for a reference.

Times are medians over repeated calls after warm-up. The programs compared in one table are compiled first
and then called in turn, call by call, so that all of them see the same machine state and their ratios are
taken within one run. FLOPs come from XLA's cost analysis of each compiled update.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp

from flowkit import solvers
from flowkit._backend import COMPILATION_CACHE_ENV
from flowkit.agents import AGENTS
from flowkit.config import AGENT_CONFIGS, AgentConfig, ConfigError, FQLConfig, RunConfig, TrainConfig
from flowkit.datasets import Transitions
from flowkit.training import Trainer, stack_seeds


def random_batch(key: jax.Array, batch_size: int, obs_dim: int, action_dim: int) -> Transitions:
    keys = jax.random.split(key, 5)
    observations = jax.random.normal(keys[0], (batch_size, obs_dim))
    return Transitions(
        observations=observations,
        actions=jax.random.uniform(keys[1], (batch_size, action_dim), minval=-1, maxval=1),
        rewards=jax.random.normal(keys[2], (batch_size,)),
        masks=jnp.ones(batch_size),
        next_observations=observations + 0.1 * jax.random.normal(keys[3], (batch_size, obs_dim)),
        next_actions=jax.random.uniform(keys[4], (batch_size, action_dim), minval=-1, maxval=1),
    )


def agent_config(agent: str, overrides: dict[str, Any]) -> AgentConfig:
    """A method's settings for a benchmark: its defaults (the papers' sizes) with the given overrides."""
    known = AGENT_CONFIGS[agent].setting_types()
    for name in overrides:
        if name in TrainConfig.setting_types():
            raise ConfigError(f"{name}: a training-loop setting; a benchmark times single updates and ignores it")
    return AGENT_CONFIGS[agent](**{name: value for name, value in overrides.items() if name in known})


def time_updates(
    contenders: dict[str, tuple[Callable, Callable]], batch: Transitions, *, iterations: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Compile each (init, update) pair, then time their updates interleaved; medians after warm-up."""
    entries = {}
    for name, (init, update) in contenders.items():
        state = init(0)
        started = time.perf_counter()
        compiled = jax.jit(update, donate_argnums=0).lower(state, batch).compile()
        compile_s = time.perf_counter() - started
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        entries[name] = {"state": state, "call": compiled, "compile_s": compile_s, "flops": cost["flops"], "times": []}
    for repeat in range(warmup + iterations):
        for entry in entries.values():
            started = time.perf_counter()
            entry["state"] = jax.block_until_ready(entry["call"](entry["state"], batch))
            if repeat >= warmup:
                entry["times"].append(time.perf_counter() - started)
    return {
        name: {
            "compile_s": entry["compile_s"],
            "ms_per_update": 1e3 * statistics.median(entry["times"]),
            "ms_iqr": 1e3 * _iqr(entry["times"]),
            "gflop_per_update": entry["flops"] / 1e9,
            "gflops": entry["flops"] / statistics.median(entry["times"]) / 1e9,
        }
        for name, entry in entries.items()
    }


def _iqr(values: Sequence[float]) -> float:
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return quartiles[2] - quartiles[0]


def _agent_update(agent_name: str, config: AgentConfig, obs_dim: int, action_dim: int) -> tuple[Callable, Callable]:
    agent = AGENTS[agent_name](config, obs_dim, action_dim)
    return agent.init, lambda state, batch: agent.update(state, batch)[0]


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
    obs_dim: int, action_dim: int, config: FQLConfig, *, iterations: int = 30, warmup: int = 5
) -> dict[str, Any]:
    """Time one FQL update of flowkit and of the pure-JAX reference (benchmarks/reference_fql.py)."""
    from benchmarks.reference_fql import ReferenceFQL

    reference = ReferenceFQL(
        obs_dim, action_dim, config.actor_hidden, solver=config.solver, flow_steps=config.flow_steps,
        alpha=config.alpha, lr=config.lr, discount=config.discount, tau=config.tau,
    )  # fmt: skip
    batch = random_batch(jax.random.PRNGKey(1), config.batch_size, obs_dim, action_dim)
    timed = time_updates(
        {"flowkit": _agent_update("fql", config, obs_dim, action_dim), "reference": (reference.init, reference.update)},
        batch,
        iterations=iterations,
        warmup=warmup,
    )
    peak = matmul_peak_gflops()
    for entry in timed.values():
        entry["share_of_peak"] = entry["gflops"] / peak
    return {
        "obs_dim": obs_dim, "action_dim": action_dim, "batch_size": config.batch_size,
        "hidden": list(config.actor_hidden), "solver": config.solver, "flow_steps": config.flow_steps,
        "nfe_per_solve": solvers.nfe(config.solver, config.flow_steps), "iterations": iterations,
        "matmul_peak_gflops": peak, "device": jax.devices()[0].device_kind, **timed,
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
    iterations: int,
    warmup: int,
) -> list[dict[str, Any]]:
    """One row per (method, solver, K): ms per update, GFLOP and NFE; each method's rows timed interleaved."""
    rows = []
    for agent in agents:
        settings = {}
        for solver in solver_names:
            for steps in flow_steps:
                config = agent_config(agent, {**overrides, "solver": solver, "flow_steps": steps})
                settings[(solver, steps)] = config
        batch = random_batch(jax.random.PRNGKey(1), next(iter(settings.values())).batch_size, obs_dim, action_dim)
        contenders = {key: _agent_update(agent, config, obs_dim, action_dim) for key, config in settings.items()}
        for (solver, steps), timing in time_updates(contenders, batch, iterations=iterations, warmup=warmup).items():
            rows.append(
                {
                    "agent": agent,
                    "solver": solver,
                    "flow_steps": steps,
                    "nfe_per_solve": solvers.nfe(solver, steps),
                    **timing,
                }
            )
    return rows


def _chunk_compile_seconds(run_config: dict[str, Any], cache_dir: str, trials: int) -> list[dict[str, float]]:
    """In this process, with the cache at `cache_dir`: seconds to trace and lower, then to compile (or load),
    `trials` trials' training chunks, each built as a trial builds it (new trainer, agent and Keras models)."""
    os.environ[COMPILATION_CACHE_ENV] = cache_dir
    config = RunConfig.from_dict(run_config)
    seconds = []
    for _ in range(trials):
        trainer = Trainer.create(config)
        state = trainer.agent.init(config.seed)
        started = time.perf_counter()
        lowered = trainer.lower_chunk(state, jax.random.PRNGKey(config.seed))
        lowered_at = time.perf_counter()
        lowered.compile()
        compiled_at = time.perf_counter()
        seconds.append(
            {"trace_s": lowered_at - started, "compile_s": compiled_at - lowered_at, "total_s": compiled_at - started}
        )
    return seconds


def _in_fresh_process(function: Callable, *args: Any) -> Any:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def bench_compile(config: RunConfig) -> dict[str, Any]:
    """Time to a trial's compiled training chunk (tracing and lowering, then XLA's compilation or the load from
    the persistent cache) with an empty cache, then with the cache it left: in the same process (the next
    trial of a worker) and in a fresh process (a trial of another worker). Ratios are of the totals."""
    with tempfile.TemporaryDirectory(prefix="flowkit-compile-bench-") as cache_dir:
        cold_s, same_process_s = _in_fresh_process(_chunk_compile_seconds, config.to_dict(), cache_dir, 2)
        (fresh_process_s,) = _in_fresh_process(_chunk_compile_seconds, config.to_dict(), cache_dir, 1)
        cache_mb = sum(entry.stat().st_size for entry in os.scandir(cache_dir)) / 2**20
    return {
        "agent": config.agent, "task": config.task, "hidden": list(config.agent_config.actor_hidden),
        "log_every": config.train.log_every, "cold": cold_s, "warm_same_process": same_process_s,
        "warm_fresh_process": fresh_process_s, "cache_mb": cache_mb,
        "load_average": os.getloadavg()[0],
        "same_process_ratio": same_process_s["total_s"] / cold_s["total_s"],
        "fresh_process_ratio": fresh_process_s["total_s"] / cold_s["total_s"],
    }  # fmt: skip


def bench_seeds(config: RunConfig, seeds: int, *, iterations: int, warmup: int) -> dict[str, Any]:
    """ms per update per seed of `seeds` runs' training chunks as one vmapped program and as one program per
    run called one after another, the two timed in turn; medians after warm-up."""
    trainer = Trainer.create(config)
    dataset, length = trainer.task.dataset, config.train.log_every
    states = [trainer.agent.init(seed) for seed in range(seeds)]
    keys = [jax.random.PRNGKey(seed) for seed in range(seeds)]
    single = trainer.lower_chunk(states[0], keys[0]).compile()
    batched_state, batched_keys = stack_seeds(states), stack_seeds(keys)
    vectorized = trainer.lower_chunk(batched_state, batched_keys, vectorized=True).compile()
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
    from flowkit.datasets.ogbench_tasks import SingleTask

    trainer = Trainer.create(config)
    task = trainer.task
    if not isinstance(task, SingleTask):
        raise ConfigError(f"--task: {config.task!r} is not an OGBench single-task name (flowkit data list)")
    policy = trainer.policy(trainer.agent.init(config.seed).params)
    envs = task.environments(episodes)
    task.evaluate(policy, jax.random.PRNGKey(0), episodes)
    rates: dict[str, list[float]] = {"evaluation": [], "raw": []}
    for repeat in range(iterations):
        started = time.perf_counter()
        metrics = task.evaluate(policy, jax.random.PRNGKey(1 + repeat), episodes)
        steps = metrics.get("episode_length", 0.0) * len(envs)
        rates["evaluation"].append(steps / (time.perf_counter() - started))
        rates["raw"].append(_raw_steps_per_second(envs, int(steps)))
    rate = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "task": config.task, "episodes": len(envs), "hidden": list(config.agent_config.actor_hidden),
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


def format_compile(results: dict[str, Any]) -> str:
    lines = [
        f"training chunk of a {results['agent']} trial on {results['task']} "
        f"(hidden {'x'.join(map(str, results['hidden']))}, {results['log_every']} updates per chunk)",
        f"{'':27s} {'trace+lower s':>13s} {'compile s':>10s} {'total s':>8s} {'of cold':>8s}",
    ]
    for name, label in (
        ("cold", "cold cache"),
        ("warm_same_process", "warm cache, same process"),
        ("warm_fresh_process", "warm cache, fresh process"),
    ):
        r = results[name]
        share = 100 * r["total_s"] / results["cold"]["total_s"]
        lines.append(f"{label:27s} {r['trace_s']:13.2f} {r['compile_s']:10.2f} {r['total_s']:8.2f} {share:7.1f}%")
    lines.append(f"cache entries: {results['cache_mb']:.1f} MB; load average at the end {results['load_average']:.1f}")
    return "\n".join(lines)


def format_seeds(results: dict[str, Any]) -> str:
    ms = results["ms_per_update_per_seed"]
    return "\n".join(
        [
            f"{results['seeds']} seeds of {results['agent']} on {results['task']} (hidden "
            f"{'x'.join(map(str, results['hidden']))}, batch {results['batch_size']}, {results['updates_per_call']} "
            f"updates per call, {results['iterations']} timed calls, {results['device']})",
            f"one vmapped program:   {ms['one_program']:.3f} ms per update per seed",
            f"sequential programs:   {ms['sequential']:.3f} ms per update per seed",
            f"speed-up of one program: {results['speedup']:.2f}x "
            f"(load average at the end {results['load_average']:.1f})",
        ]
    )


def format_evaluation(results: dict[str, Any]) -> str:
    rate = results["steps_per_second"]
    return "\n".join(
        [
            f"evaluation on {results['task']}: {results['episodes']} episodes in lockstep, policy hidden "
            f"{'x'.join(map(str, results['hidden']))}, {results['iterations']} timed evaluations",
            f"evaluation (policy + environments): {rate['evaluation']:8.0f} environment steps/s",
            f"environments alone (random actions): {rate['raw']:7.0f} environment steps/s",
            f"evaluation / raw stepping: {100 * results['share_of_raw']:.0f}% "
            f"(load average at the end {results['load_average']:.1f})",
        ]
    )


def format_step(results: dict[str, Any]) -> str:
    lines = [
        f"FQL update: obs {results['obs_dim']}, action {results['action_dim']}, batch {results['batch_size']}, "
        f"hidden {'x'.join(map(str, results['hidden']))}, {results['solver']} K={results['flow_steps']} "
        f"(NFE {results['nfe_per_solve']}), {results['iterations']} timed updates, {results['device']}",
        f"{'':10s} {'compile s':>10s} {'ms/update':>10s} {'GFLOP':>8s} {'GFLOP/s':>8s} {'of peak':>8s}",
    ]
    for name in ("flowkit", "reference"):
        r = results[name]
        lines.append(
            f"{name:10s} {r['compile_s']:10.2f} {r['ms_per_update']:10.2f} {r['gflop_per_update']:8.2f} "
            f"{r['gflops']:8.1f} {100 * r['share_of_peak']:7.1f}%"
        )
    lines.append(
        f"matmul peak {results['matmul_peak_gflops']:.1f} GFLOP/s; flowkit / reference = {results['ratio']:.3f}"
    )
    return "\n".join(lines)


def format_methods(rows: list[dict[str, Any]]) -> str:
    header = ("method", "solver", "K", "NFE", "ms/update", "IQR", "GFLOP", "compile s")
    lines = ["{:12s} {:9s} {:>3s} {:>4s} {:>10s} {:>7s} {:>8s} {:>10s}".format(*header)]
    for r in rows:
        lines.append(
            f"{r['agent']:12s} {r['solver']:9s} {r['flow_steps']:3d} {r['nfe_per_solve']:4d} "
            f"{r['ms_per_update']:10.2f} {r['ms_iqr']:7.2f} {r['gflop_per_update']:8.3f} {r['compile_s']:10.2f}"
        )
    return "\n".join(lines)
