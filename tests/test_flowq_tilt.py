"""What FlowQ's energy-guided regression learns, measured on a 1-D Gaussian bandit with the exact critic.

Actions ~ N(m, s^2) at one constant observation, Q = c a. The exact tilt pi_beta exp(lambda Q) is
N(m + lambda c s^2, s^2); the kit's flow, fitted to its own loss and integrated by its own solver, moves the mean
by lambda c s^2 R(g, s) (agents/flowq.py). The flow here is linear in its parameters (affine in x, piecewise
linear in t), which holds the loss's exact minimiser up to the t-grid, so least squares on FlowQ.loss's targets
fits it.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowkit.agents.common import flow_actions
from flowkit.agents.flowq import FlowQ, FlowQConfig
from flowkit.schedules import SCHEDULES, energy_schedule, schedule_strength
from flowkit.tasks import Transitions

SLOPE = 1.5
"""c in Q = c a."""
KNOTS = 64
"""Pieces of the flow's piecewise-linear dependence on t; the solver takes one step per piece."""


def features(x: jax.Array, t: jax.Array) -> jax.Array:
    """[hat_j(t), hat_j(t) x] for j = 0..KNOTS: the flow is affine in x and piecewise linear in t."""
    hats = jnp.maximum(0.0, 1.0 - jnp.abs(t * KNOTS - jnp.arange(KNOTS + 1)))
    return jnp.concatenate([hats, hats * x], axis=-1)


class ExactCriticFlowQ(FlowQ):
    """FlowQ with the critic Q = c a; its flow's output is a free array, one value per sample, and the flow's
    inputs (which do not depend on the flow's parameters) are recorded, so the loss's targets can be read."""

    def apply(self, model: str, params, *inputs: jax.Array) -> jax.Array:
        if model == "critic":
            return SLOPE * inputs[1].sum(-1)[None]
        if model == "flow":
            self.flow_inputs = inputs[1:]
            return params["flow"][0]
        return super().apply(model, params, *inputs)


class FittedFlowQ(FlowQ):
    """FlowQ whose flow is v(x, t) = features(x, t) theta, theta its only parameter."""

    def apply(self, model: str, params, *inputs: jax.Array) -> jax.Array:
        if model == "flow":
            return features(*inputs[1:]) @ params["flow"][0]
        return super().apply(model, params, *inputs)


def bandit(mean: float, std: float, size: int = 1 << 16) -> Transitions:
    actions = mean + std * jax.random.normal(jax.random.PRNGKey(1), (size, 1))
    zeros, flat = jnp.zeros((size, 1)), jnp.zeros(size)
    return Transitions(zeros, actions, flat, flat, zeros, actions)


def fit_flow(schedule: str, lam: float, data: Transitions) -> jax.Array:
    """theta minimising FlowQ's flow loss, mean (v - y)^2: its gradient in v at v = 0 gives the targets y."""
    agent = ExactCriticFlowQ(FlowQConfig(lam=lam, schedule=schedule, critic_hidden=(4,), actor_hidden=(4,)), 1, 1)
    state = agent.init(0)

    def flow_loss(outputs: jax.Array) -> jax.Array:
        params = {**state.params, "flow": [outputs]}
        return agent.loss(params, state.target_params, data, jax.random.PRNGKey(2), state.step).terms["flow"]

    zero = jnp.zeros_like(data.actions)
    targets = -0.5 * zero.size * jax.grad(flow_loss)(zero)
    design = features(*agent.flow_inputs)
    return jnp.linalg.solve(design.T @ design, design.T @ targets)


@functools.cache
def end_point_mean() -> Callable[[jax.Array], jax.Array]:
    """theta -> mean of the end point from N(0, 1), by the kit's RK4 with one step per knot. The field is affine
    in x and RK4 is linear in it, so the solve from x0 = 0 is exactly the mean of the solves from N(0, 1)."""
    config = FlowQConfig(solver="rk4", flow_steps=KNOTS, critic_hidden=(4,), actor_hidden=(4,))
    agent = FittedFlowQ(config, 1, 1)
    params = agent.init(0).params
    origin = jnp.zeros((1, 1))
    return jax.jit(lambda theta: flow_actions(agent, {**params, "flow": [theta]}, origin, origin)[0, 0])


@pytest.mark.parametrize("std", [0.2, 1.0])
def test_each_schedule_moves_the_mean_by_its_predicted_strength_not_by_the_exact_tilt(std):
    lam, data = 0.5, bandit(0.3, std)
    unguided = float(end_point_mean()(fit_flow("t", 0.0, data)))
    assert abs(unguided - 0.3) < 0.02, f"lambda = 0 should clone N(0.3, {std}^2): mean {unguided:.4f}"
    exact = lam * SLOPE * std**2
    for schedule in SCHEDULES:
        shift = float(end_point_mean()(fit_flow(schedule, lam, data))) - unguided
        predicted = exact * schedule_strength(schedule, std)
        naive = lam * SLOPE * float(np.mean(energy_schedule(schedule, (np.arange(4096) + 0.5) / 4096)))
        message = (
            f"h = {schedule}, s = {std}: measured shift {shift:.4f}, predicted lambda c s^2 R = {predicted:.4f}, "
            f"exact tilt lambda c s^2 = {exact:.4f}, lambda c int g = {naive:.4f}"
        )
        assert abs(shift - predicted) < 0.03 * predicted, message
        assert abs(shift - exact) > 0.2 * exact and abs(shift - naive) > 0.2 * naive, message


def test_schedule_strength_matches_its_closed_forms():
    """At s = 1, sigma_t = sqrt((1 - t)^2 + t^2): R = asinh(1) / sqrt(2) for g = 1 - t and g = t, and
    3 asinh(1) / (4 sqrt(2)) - 1/4 for g = t (1 - t). At s = 0.1, h = t is about 9x the exact tilt."""
    closed = {"t": np.arcsinh(1) / np.sqrt(2), "t2-over-1-t": np.arcsinh(1) / np.sqrt(2)}
    closed["t2"] = 3 * np.arcsinh(1) / (4 * np.sqrt(2)) - 0.25
    for schedule, value in closed.items():
        strength = schedule_strength(schedule, 1.0)
        assert strength == pytest.approx(value, rel=1e-5), f"{schedule}: R = {strength:.6f}, closed form {value:.6f}"
    narrow = schedule_strength("t", 0.1)
    assert 9.1 < narrow < 9.3, f"h = t at s = 0.1: R = {narrow:.4f}, expected about 9.2"
