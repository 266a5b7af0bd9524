"""Compiled training chunks: `log_every` updates as one program, and the programs a process keeps.

A chunk runs its updates as one jit-compiled lax.scan; minibatches are sampled inside it from the dataset on the
device, so the host only starts chunks. Its summary is the mean of every per-update metric over the chunk, plus
the maximum of each gradient norm. The method's coefficients are arguments, not constants, so runs that differ
only in them (or in seed) share one compiled program.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from flowkit._backend import stored_executable
from flowkit.agents import Agent, AgentConfig, TrainState
from flowkit.settings import TrainConfig
from flowkit.tasks import Transitions

CHUNKS_KEPT = 4
"""Compiled training chunks a process keeps for its later runs (a cell's other seeds, the next trial)."""
_compiled_chunks: OrderedDict[tuple, jax.stages.Compiled] = OrderedDict()


def forget_compiled_chunks() -> None:
    """Drop the chunks this process kept: needed only after changing an agent's code in a running process
    (a monkeypatched loss), which the kept programs, traced before, would not see."""
    _compiled_chunks.clear()


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


def compiled_chunk(
    agent: Agent, train: TrainConfig, dataset: Transitions, state: TrainState, data_key: jax.Array, vectorized: bool
) -> Chunk:
    """The training chunk compiled for these shapes; `vectorized` maps it over a leading seed axis of the state
    and key, the dataset and coefficients shared.

    The process keeps the last CHUNKS_KEPT programs, keyed by everything the traced program depends on (the
    method and its settings but the coefficients, the loop's settings, the arguments' structure, shapes and
    dtypes), so that a later run of the same program (another seed, the next trial, another alpha) starts
    training without tracing the Keras models again. Other processes (workers, the next study run) load it from
    the cache folder under the same key (stored_executable); any other is traced and compiled.
    """
    coefficients = coefficient_arrays(agent.config)
    arguments = (state, dataset, data_key, coefficients)
    key = program_key(agent, train, arguments, vectorized)
    if key in _compiled_chunks:
        _compiled_chunks.move_to_end(key)
    else:
        _compiled_chunks[key] = stored_executable(repr(key), lambda: _compile(agent, train, arguments, vectorized))
        while len(_compiled_chunks) > CHUNKS_KEPT:
            _compiled_chunks.popitem(last=False)
    return Chunk(_compiled_chunks[key], coefficients)


def program_key(agent: Agent, train: TrainConfig, arguments: tuple, vectorized: bool) -> tuple:
    """Everything the traced chunk depends on: the method, its settings but the coefficients, the loop's settings
    and the arguments' structure, shapes and dtypes."""
    config, coefficients = agent.config, arguments[-1]
    return (
        f"{type(agent).__module__}.{type(agent).__qualname__}",
        tuple((item.name, getattr(config, item.name)) for item in dataclasses.fields(config)
              if item.name not in coefficients),
        agent.obs_dim,
        agent.action_dim,
        train.log_every,
        train.term_grad_norms,
        vectorized,
        jax.tree.structure(arguments),
        tuple(jax.typeof(leaf) for leaf in jax.tree.leaves(arguments)),
    )  # fmt: skip


def _compile(agent: Agent, train: TrainConfig, arguments: tuple, vectorized: bool) -> jax.stages.Compiled:
    """Trace and compile the chunk, its state donated (the next chunk's state reuses its buffers)."""
    chunk = make_chunk(agent, agent.config.batch_size, train.log_every, train.term_grad_norms)
    if vectorized:
        chunk = jax.vmap(chunk, in_axes=(0, None, 0, None))
    return jax.jit(chunk, donate_argnums=0).lower(*arguments).compile()


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
