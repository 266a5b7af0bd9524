"""FlowQ: energy-guided flow matching (Alles, Chen, van der Smagt and Cseke, 2025); a reconstruction.

The paper's code is not public; this is what the kit computes and what that provably does. The aim is
pi(a|s) ∝ pi_beta(a|s) exp(lambda Q(s, a)). On the linear path x_t = (1 - t) x0 + t a, x0 ~ N(0, I), the
flow v(s, x, t) regresses onto the conditional target

    (a - x0) + lambda g(t) stop_grad(grad_x Q(s, x_t)),   g(t) = ((1 - t) / t) h(t),

with t ~ U[0, 1]. Its exact minimiser is the conditional mean of the target, v* = u_t(x) + lambda g(t)
grad_x Q(s, x), u_t the flow of pi_beta. The paper's motivation: Tweedie's formula gives u_t(x) = x / t +
((1 - t) / t) grad log p_t(x) for Gaussian-path marginals p_t, and tilting p_t by exp(lambda h(t) Q) adds the
guidance term. Two approximations make v* something else than the flow of pi_beta exp(lambda Q):
(1) the tilted marginals p_t exp(lambda h(t) Q) are not the Gaussian-path marginals of any end point, so the
formula does not give a field that transports them (nor the tilted end point); (2) Q, a critic of actions, is
evaluated at the noisy x_t. What v* does is exact for 1-D data N(m, s^2) and Q = c a: u_t is affine with
slope sigma_t' / sigma_t, sigma_t^2 = (1 - t)^2 + t^2 s^2, so a velocity added at time t is stretched by
sigma_1 / sigma_t = s / sigma_t before t = 1. The end point is N(m + lambda c s^2 R, s^2) with

    R(g, s) = int_0^1 g(t) / (s sigma_t) dt          (`flowkit.schedules.schedule_strength`),

against the exact tilt N(m + lambda c s^2, s^2). R = 1 only by accident: h = t (g = 1 - t) has R = 0.62 at
s = 1 and 9.2 at s = 0.1, so lambda means a different strength for each schedule and each data spread. The
schedules: h = t gives g = 1 - t; h = t^2 gives g = t (1 - t); h = t^2 / (1 - t) gives g = t (h(1) is
infinite, but g is finite, so nothing is clipped; its R is 0.62 at s = 1 and 22 at s = 0.1).

The paper also trains a schedule h_theta; the kit offers none, since the regression above has no term that
prefers one g over another (v chases whatever target g sets, so every g is stationary once v fits). An
objective that does select, the distance of the learnt end point from the tilt, needs samples and densities of
the policy, which FlowQ's training by design never draws.

Training never samples the policy, so its cost does not grow with the number of flow steps: the critic is
in-sample, IQL-style (V(s) by expectile regression onto min_i Qbar_i(s, a), Q onto r + gamma mask V(s')). A
TD critic with next actions from the full flow (`critic=td`) is offered for comparison. Acting integrates the
flow with the configured solver and steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import keras

from flowkit.agents.base import Agent, CriticConfig, FlowConfig, Loss, Params
from flowkit.agents.common import (
    critic_and_flow,
    draw_path,
    flow_actions,
    iql_losses,
    path_point,
    policy_value,
    td_loss,
)
from flowkit.networks import FlowPolicy, StateValue, derive_seed
from flowkit.schedules import SCHEDULES, energy_schedule
from flowkit.settings import Source, setting
from flowkit.tasks import Transitions


@dataclass(frozen=True)
class FlowQConfig(FlowConfig, CriticConfig):
    display_name = "FlowQ"
    default_source = Source("kit", "FlowQ's code is not public; the kit's reconstruction (module docstring)")
    constraint_settings = ("lam",)

    lam: float = setting(
        1.0,
        "FlowQ: energy scale lambda of the target pi_beta exp(lambda Q)",
        low=0,
        source=Source("none", "FlowQ's code and per-task values are not public; 1 is a placeholder"),
    )
    schedule: str = setting("t", "energy schedule h(t): t, t2 (t^2) or t2-over-1-t (t^2/(1-t))", choices=SCHEDULES)
    critic: str = setting(
        "iql", "iql: in-sample expectile critic; td: TD target with next actions from the flow", choices=("iql", "td")
    )
    expectile: float = setting(0.9, "expectile of the IQL value regression", above=0, below=1)

    def check(self) -> None:
        self.require_linear_path()


class FlowQ(Agent[FlowQConfig]):
    name = "flowq"
    config_class = FlowQConfig
    policy_network = "flow"
    target_models = ("critic",)

    def build_models(self, seed: int) -> dict[str, keras.Model]:
        c, obs = self.config, self.obs_dim
        models = {
            **critic_and_flow(self, seed),
        }
        if c.critic == "iql":
            models["value"] = StateValue(obs, c.critic_hidden, c.critic_layer_norm, seed=derive_seed(seed, 3))
        return models

    def loss(self, params: Params, target_params: Params, batch: Transitions, key: jax.Array, step: jax.Array) -> Loss:
        c = self.config
        next_key, path_key = jax.random.split(key)
        frozen = jax.lax.stop_gradient(params)

        if c.critic == "iql":
            # Value: expectile regression of V(s) onto min_i Qbar_i(s, a); critic: Q(s, a) onto r + gamma V(s').
            value_loss, critic_loss, metrics = iql_losses(self, params, target_params, batch, c.expectile, "min")
        else:
            next_actions = self.act(frozen, batch.next_observations, next_key)
            critic_loss, metrics = td_loss(self, params, target_params, batch, next_actions)
            value_loss = 0.0

        # Energy-guided flow matching: the target velocity is tilted by lambda g(t) grad_x Q(s, x_t).
        drawn = draw_path(batch.actions, path_key)
        t = drawn.t
        x_t, path_velocity = path_point(self, drawn, batch.actions)
        grad_q = jax.grad(lambda x: policy_value(self, params, batch.observations, x).sum())(x_t)
        g = energy_schedule(c.schedule, t)
        target = path_velocity + c.lam * g * grad_q
        flow_loss = jnp.mean((self.apply("flow", params, batch.observations, x_t, t) - target) ** 2)

        metrics.update(
            flow_loss=flow_loss, guidance_norm=jnp.linalg.norm(grad_q, axis=-1).mean(), schedule_mean=g.mean()
        )
        return Loss({"critic": critic_loss, "value": value_loss, "flow": flow_loss}, metrics)

    def policy(self, params: Params, observations: jax.Array, noise: jax.Array) -> jax.Array:
        return jnp.clip(flow_actions(self, params, observations, noise), -1, 1)

    def policy_model(self) -> keras.Model:
        return FlowPolicy(self.models["flow"], solver=self.config.solver, steps=self.config.flow_steps)
