"""Loss pieces that several methods share, written once: flow matching, TD learning, flow sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flowkit import solvers
from flowkit.agents.base import Agent, Params
from flowkit.config import FlowConfig
from flowkit.datasets import Transitions


def aggregate(values: jax.Array, how: str) -> jax.Array:
    """Reduce an ensemble's outputs (ensemble on axis 0) by mean or min."""
    return values.min(axis=0) if how == "min" else values.mean(axis=0)


def flow_matching_loss(agent: Agent, params: Params, batch: Transitions, key: jax.Array, model: str = "flow"):
    """L_BC = mean || v(s, x_t, t) - (a - x0) ||^2 on the linear path x_t = (1 - t) x0 + t a.

    Averaged over batch and action dimensions, as in the public FQL code, so that its alpha values transfer.
    """
    noise_key, time_key = jax.random.split(key)
    x0 = jax.random.normal(noise_key, batch.actions.shape)
    t = jax.random.uniform(time_key, (*batch.actions.shape[:-1], 1))
    x_t = (1 - t) * x0 + t * batch.actions
    velocity = agent.apply(model, params, batch.observations, x_t, t)
    return jnp.mean((velocity - (batch.actions - x0)) ** 2)


def flow_actions(
    agent: Agent[FlowConfig], params: Params, observations: jax.Array, noise: jax.Array, model: str = "flow"
) -> jax.Array:
    """Psi_{0->1}(s, z) with the configured solver and flow steps (unclipped)."""
    return solvers.integrate(
        lambda x, t: agent.apply(model, params, observations, x, t),
        noise,
        solver=agent.config.solver,
        steps=agent.config.flow_steps,
    )


def td_loss(
    agent: Agent, params: Params, target_params: Params, batch: Transitions, next_actions: jax.Array, q_agg: str
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L_Q = mean_i,batch (Q_i(s, a) - y)^2 with y = r + gamma mask agg_i Qbar_i(s', a'), no gradient through y."""
    next_q = aggregate(agent.apply("critic", target_params, batch.next_observations, next_actions), q_agg)
    target = jax.lax.stop_gradient(batch.rewards + agent.config.discount * batch.masks * next_q)
    q = agent.apply("critic", params, batch.observations, batch.actions)
    loss = jnp.mean((q - target) ** 2)
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "q_max": q.max(), "q_min": q.min()}
