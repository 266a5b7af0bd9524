"""Loss pieces that several methods share, written once: the probability path, flow matching, sampling the flow,
distillation and TD learning."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import keras

from flowkit import paths, solvers
from flowkit.agents.base import Agent, CriticConfig, FlowConfig, Params
from flowkit.networks import CriticEnsemble, VelocityField, derive_seed
from flowkit.tasks import Transitions


def critic_and_flow(agent: Agent, seed: int) -> dict[str, keras.Model]:
    """The critic ensemble and the velocity field of a flow method with a critic, seeded as every method seeds them
    (the same seed gives every method the same initial critic and flow)."""
    c, obs, act = agent.config, agent.obs_dim, agent.action_dim
    return {
        "critic": CriticEnsemble(obs, act, c.critic_hidden, c.critic_layer_norm, seed=derive_seed(seed, 0)),
        "flow": VelocityField(obs, act, c.actor_hidden, c.actor_layer_norm, seed=derive_seed(seed, 1)),
    }


def aggregate(values: jax.Array, how: str) -> jax.Array:
    """Reduce an ensemble's outputs (ensemble on axis 0) by mean or min."""
    return values.min(axis=0) if how == "min" else values.mean(axis=0)


class FlowPath(NamedTuple):
    """A draw of a point on the probability path: the noise x0 ~ N(0, I) and the time t ~ U[0, 1]."""

    x0: jax.Array
    t: jax.Array
    """Shape (*batch, 1)."""


def draw_path(actions: jax.Array, key: jax.Array) -> FlowPath:
    """x0 ~ N(0, I) of the actions' shape and t ~ U[0, 1] per sample, from one key."""
    noise_key, time_key = jax.random.split(key)
    return FlowPath(jax.random.normal(noise_key, actions.shape), jax.random.uniform(time_key, (*actions.shape[:-1], 1)))


def path_point(agent: Agent[FlowConfig], drawn: FlowPath, actions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x_t and its velocity target d x_t / dt for the data's actions, on the run's probability path (`path`)."""
    return (
        paths.interpolant(agent.config.path, drawn.x0, actions, drawn.t),
        paths.velocity_target(agent.config.path, drawn.x0, actions, drawn.t),
    )


def flow_matching_loss(agent: Agent, params: Params, batch: Transitions, path: FlowPath) -> jax.Array:
    """L_BC = mean || v(s, x_t, t) - d x_t / dt ||^2 at the drawn path point (a - x0 on the linear path).

    Averaged over batch and action dimensions, as in the public FQL code, so that its alpha values transfer.
    """
    x_t, target = path_point(agent, path, batch.actions)
    return jnp.mean((agent.apply("flow", params, batch.observations, x_t, path.t) - target) ** 2)


class ActorCriticDraws(NamedTuple):
    """The random draws of one FQL or FBRAC loss: what a test replaces to feed another implementation the same."""

    next_noise: jax.Array
    """z' of the next actions in the TD target."""
    path: FlowPath
    """(x0, t) of flow matching."""
    noise: jax.Array
    """z of the policy's actions in the Q term (and of FQL's distillation)."""


def actor_critic_draws(agent: Agent, key: jax.Array, batch: Transitions) -> ActorCriticDraws:
    """FQL's and FBRAC's draws: the key split in three, for the next actions, the path and the policy's noise."""
    next_key, bc_key, noise_key = jax.random.split(key, 3)
    return ActorCriticDraws(
        agent.policy_noise(next_key, batch.next_observations),
        draw_path(batch.actions, bc_key),
        jax.random.normal(noise_key, batch.actions.shape),
    )


def flow_actions(
    agent: Agent[FlowConfig],
    params: Params,
    observations: jax.Array,
    x: jax.Array,
    t0: float | jax.Array = 0.0,
    trajectory: bool = False,
) -> jax.Array:
    """Psi_{t0->1}(s, x) with the configured solver and flow steps (unclipped); per-sample t0 allowed.

    With `trajectory`, the states after each step, shape (K, *x.shape).
    """
    return solvers.integrate(
        lambda x, t: agent.apply("flow", params, observations, x, t),
        x,
        solver=agent.config.solver,
        steps=agent.config.flow_steps,
        t0=t0,
        trajectory=trajectory,
    )


def distillation_loss(
    agent: Agent, params: Params, observations: jax.Array, noise: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """mean || mu_w(s, z) - clip(Psi_{0->1}(s, z)) ||^2 with no gradient to the flow; also returns mu_w(s, z)."""
    teacher = jnp.clip(flow_actions(agent, jax.lax.stop_gradient(params), observations, noise), -1, 1)
    actions = agent.apply("onestep", params, observations, noise)
    return jnp.mean((actions - teacher) ** 2), actions


def td_loss(
    agent: Agent[CriticConfig], params: Params, target_params: Params, batch: Transitions, next_actions: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L_Q = mean_i,batch (Q_i(s, a) - y)^2 with y = r + gamma mask agg_i Qbar_i(s', a'), no gradient through y."""
    next_q = aggregate(agent.apply("critic", target_params, batch.next_observations, next_actions), agent.config.q_agg)
    return q_regression(agent, params, batch, batch.rewards + agent.config.discount * batch.masks * next_q)


def q_regression(
    agent: Agent, params: Params, batch: Transitions, target: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """mean_i,batch (Q_i(s, a) - stop_grad(target))^2 and the critic's statistics."""
    q = agent.apply("critic", params, batch.observations, batch.actions)
    loss = jnp.mean((q - jax.lax.stop_gradient(target)) ** 2)
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "q_max": q.max(), "q_min": q.min()}


def iql_losses(
    agent: Agent[CriticConfig], params: Params, target_params: Params, batch: Transitions, expectile: float, how: str
) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """IQL's in-sample critic (Kostrikov et al., 2022): the value loss, then the critic loss, and their metrics.

    V(s) regresses onto agg_i Qbar_i(s, a) by the expectile loss |expectile - 1(u < 0)| u^2, u = Qbar - V; Q(s, a)
    regresses onto r + gamma * mask * V(s'), with no gradient through V(s'). No action outside the data is used.
    """
    target_q = aggregate(agent.apply("critic", target_params, batch.observations, batch.actions), how)
    residual = target_q - agent.apply("value", params, batch.observations)
    value_loss = jnp.mean(jnp.abs(expectile - (residual < 0)) * residual**2)
    next_v = agent.apply("value", params, batch.next_observations)
    critic_loss, metrics = q_regression(
        agent, params, batch, batch.rewards + agent.config.discount * batch.masks * next_v
    )
    metrics["value_loss"] = value_loss
    return value_loss, critic_loss, metrics


CONSISTENCY_STATES = 256
"""Observations (each with its own noise) the value-consistency probe follows along the flow."""


def flow_value_gaps(agent: Agent, params: Params, observations: jax.Array, noise: jax.Array) -> jax.Array:
    """|W(s, Psi_{tau->1}(x_tau), 1) - W(s, x_tau, tau)| at tau = k / K, k = 0..K, on the policy's own flow.

    x_tau are the solver's states from the noise, with the run's solver and K, so Psi_{tau->1}(x_tau) is the
    solve's end point. W is the method's `intermediate_value`: V(s, x, t) where it learns one (Q-Flow), else the
    critic's mean Q(s, x) evaluated mid-flow, which measures how wrong it is to use Q off the data.
    Returns shape (K + 1, batch).
    """
    path = jnp.concatenate([noise[None], flow_actions(agent, params, observations, noise, trajectory=True)])
    steps = path.shape[0] - 1

    def value(x: jax.Array, t: float) -> jax.Array:
        return agent.intermediate_value(params, observations, x, jnp.full((*x.shape[:-1], 1), t))

    end_value = value(path[-1], 1.0)
    return jnp.stack([jnp.abs(end_value - value(path[k], k / steps)) for k in range(steps + 1)])


def onestep_tradeoff(agent: Agent, params: Params, observations: jax.Array, noise: jax.Array) -> dict[str, jax.Array]:
    """Where FQL's one-step policy sits between the flow it distils and the critic's maximum, from the same noise:
    its distillation loss, its mean distance to the flow's actions and its mean Q gain over them (alpha's trade-off).
    """
    flow = jnp.clip(flow_actions(agent, params, observations, noise), -1, 1)
    onestep = agent.apply("onestep", params, observations, noise)
    clipped = jnp.clip(onestep, -1, 1)
    gain = agent.apply("critic", params, observations, clipped) - agent.apply("critic", params, observations, flow)
    return {
        "tradeoff_distill_loss": jnp.mean((onestep - flow) ** 2),
        "tradeoff_distance": jnp.linalg.norm(clipped - flow, axis=-1).mean(),
        "tradeoff_q_gain": gain.mean(),
    }


def policy_value(
    agent: Agent, params: Params, observations: jax.Array, actions: jax.Array, how: str = "mean"
) -> jax.Array:
    """agg_i Q_i(s, a) with no gradient to the critic: the value a policy maximises (the papers use the mean)."""
    return aggregate(agent.apply("critic", jax.lax.stop_gradient(params), observations, actions), how)


def q_maximisation_loss(q: jax.Array, normalize: bool) -> jax.Array:
    """-mean Q; normalised, scaled by 1 / mean|Q| with no gradient through the scale (TD3+BC's, FQL's option)."""
    scale = jax.lax.stop_gradient(1 / jnp.abs(q).mean()) if normalize else 1.0
    return -q.mean() * scale


def learns_intermediate_value(agent: Agent) -> bool:
    """Whether the method learns its own V(s, x, t) (Q-Flow), rather than reading the critic mid-flow."""
    return type(agent).intermediate_value is not Agent.intermediate_value


def start_values(
    agent: Agent, params: Params, observations: jax.Array, actions: jax.Array, noise: jax.Array
) -> dict[str, jax.Array]:
    """What the value-bias probe compares with an episode's return: Q(s0, a0), the critic ensemble aggregated as the
    method's actor reads it (`actor_q_agg`), and, where the method learns one, V(s0, x0, 0) at the noise x0."""
    values = {"q": aggregate(agent.apply("critic", params, observations, actions), agent.actor_q_agg)}
    if learns_intermediate_value(agent):
        values["v"] = agent.intermediate_value(params, observations, noise, jnp.zeros((*noise.shape[:-1], 1)))
    return values
