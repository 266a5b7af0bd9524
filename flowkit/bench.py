"""`flowkit bench`: what one update costs, measured the same way for every method and for a reference.

Times are medians over repeated calls after warm-up. The programs compared in one table are compiled first
and then called in turn, call by call, so that all of them see the same machine state and their ratios are
taken within one run. FLOPs come from XLA's cost analysis of each compiled update.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from flowkit import solvers
from flowkit.agents import AGENTS
from flowkit.config import AGENT_CONFIGS, AgentConfig, ConfigError, FQLConfig, TrainConfig
from flowkit.datasets import Transitions


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
