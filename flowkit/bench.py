"""`flowkit bench`: what one update costs, measured the same way for flowkit and for a reference.

Times are medians over repeated calls after warm-up, with flowkit and the reference interleaved call by call so
that both see the same machine state; ratios are taken within one run. FLOPs come from XLA's cost analysis of
the compiled update.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from flowkit import solvers
from flowkit.agents.fql import FQL
from flowkit.config import ConfigError, FQLConfig, TrainConfig
from flowkit.datasets import Transitions


def random_batch(key: jax.Array, batch_size: int, obs_dim: int, action_dim: int) -> Transitions:
    keys = jax.random.split(key, 4)
    observations = jax.random.normal(keys[0], (batch_size, obs_dim))
    return Transitions(
        observations=observations,
        actions=jax.random.uniform(keys[1], (batch_size, action_dim), minval=-1, maxval=1),
        rewards=jax.random.normal(keys[2], (batch_size,)),
        masks=jnp.ones(batch_size),
        next_observations=observations + 0.1 * jax.random.normal(keys[3], (batch_size, obs_dim)),
    )


def fql_config(overrides: dict[str, Any]) -> FQLConfig:
    """FQL settings for a benchmark: the method's defaults (the paper's sizes) with the given overrides."""
    for name in overrides:
        if name in TrainConfig.setting_types():
            raise ConfigError(f"{name}: a training-loop setting; `bench step` times a single update and ignores it")
    return FQLConfig(**overrides)


def _compile(function: Callable, *args: Any) -> tuple[Any, float, float]:
    started = time.perf_counter()
    compiled = jax.jit(function, donate_argnums=0).lower(*args).compile()
    seconds = time.perf_counter() - started
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return compiled, seconds, float(cost["flops"])


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

    batch = random_batch(jax.random.PRNGKey(1), config.batch_size, obs_dim, action_dim)
    agent = FQL(config, obs_dim, action_dim)
    reference = ReferenceFQL(
        obs_dim,
        action_dim,
        config.actor_hidden,
        solver=config.solver,
        flow_steps=config.flow_steps,
        alpha=config.alpha,
        lr=config.lr,
        discount=config.discount,
        tau=config.tau,
    )
    contenders = {}
    for name, init, update in (
        ("flowkit", agent.init, lambda state, batch: agent.update(state, batch)[0]),
        ("reference", reference.init, reference.update),
    ):
        state = init(0)
        compiled, compile_s, flops = _compile(update, state, batch)
        contenders[name] = {"state": state, "call": compiled, "compile_s": compile_s, "flops": flops, "times": []}
    for repeat in range(warmup + iterations):
        for entry in contenders.values():
            started = time.perf_counter()
            entry["state"] = jax.block_until_ready(entry["call"](entry["state"], batch))
            if repeat >= warmup:
                entry["times"].append(time.perf_counter() - started)
    peak = matmul_peak_gflops()
    results: dict[str, Any] = {
        "obs_dim": obs_dim,
        "action_dim": action_dim,
        "batch_size": config.batch_size,
        "hidden": list(config.actor_hidden),
        "solver": config.solver,
        "flow_steps": config.flow_steps,
        "nfe_per_solve": solvers.nfe(config.solver, config.flow_steps),
        "iterations": iterations,
        "matmul_peak_gflops": peak,
        "device": jax.devices()[0].device_kind,
    }
    for name, entry in contenders.items():
        median_s = statistics.median(entry["times"])
        results[name] = {
            "compile_s": entry["compile_s"],
            "ms_per_update": 1e3 * median_s,
            "gflop_per_update": entry["flops"] / 1e9,
            "gflops": entry["flops"] / median_s / 1e9,
            "share_of_peak": entry["flops"] / median_s / 1e9 / peak,
        }
    results["ratio"] = results["flowkit"]["ms_per_update"] / results["reference"]["ms_per_update"]
    return results


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
