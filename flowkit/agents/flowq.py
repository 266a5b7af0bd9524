"""FlowQ: energy-guided flow matching (Alles, Chen, van der Smagt and Cseke, 2025); a reconstruction.

The paper's code is not public, so this is the derivation the kit implements. The target policy is
pi(a|s) ∝ pi_beta(a|s) exp(lambda Q(s, a)). On the linear path x_t = (1 - t) x0 + t a with x0 ~ N(0, I),
a - x0 = (a - x_t) / (1 - t), so the marginal velocity is u_t(x) = (E[a | x_t = x] - x) / (1 - t); Tweedie's
formula for x_t = t a + (1 - t) x0 gives E[a | x_t = x] = (x + (1 - t)^2 grad log p_t(x)) / t, hence

    u_t(x) = x / t + ((1 - t) / t) grad_x log p_t(x).

Tilting every intermediate marginal, p~_t ∝ p_t exp(lambda h(t) Q(s, x)) with h(0) = 0 (the source stays
Gaussian) and h(1) = 1 (the end point is the target), adds lambda h(t) grad_x Q(s, x) to the score and so
((1 - t) / t) lambda h(t) grad_x Q(s, x) to the velocity. Regressing v_theta on the conditional target

    (a - x0) + lambda g(t) stop_grad(grad_x Q(s, x_t)),   g(t) = ((1 - t) / t) h(t),

learns the tilted flow in expectation (the Gaussian-path approximation evaluates Q at x_t). The schedules:
h = t gives g = 1 - t; h = t^2 gives g = t (1 - t); h = t^2 / (1 - t) gives g = t; and a learnable
g_psi(t) >= 0 with integral 1/2 (as 1 - t and t have) is trained on the same regression loss.

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

from flowkit.agents.base import Agent, CriticConfig, FlowConfig, Params
from flowkit.agents.common import flow_actions, interpolate, iql_losses, policy_value, td_loss
from flowkit.networks import CriticEnsemble, FlowPolicy, LearnedSchedule, StateValue, VelocityField, derive_seed
from flowkit.settings import setting
from flowkit.tasks import Transitions

SCHEDULES = ("t", "t2", "t2-over-1-t", "learnable")
"""The energy schedules h(t), named by their formula."""


def energy_schedule(schedule: str, t: jax.Array) -> jax.Array:
    """g(t) = ((1 - t) / t) h(t) for the fixed energy schedules h."""
    if schedule == "t":
        return 1 - t
    if schedule == "t2":
        return t * (1 - t)
    if schedule == "t2-over-1-t":
        return t
    raise ValueError(f"schedule: {schedule!r} has no closed form")


@dataclass(frozen=True)
class FlowQConfig(FlowConfig, CriticConfig):
    display_name = "FlowQ"

    lam: float = setting(1.0, "FlowQ: energy scale lambda of the target pi_beta exp(lambda Q)", low=0)
    schedule: str = setting(
        "t", "energy schedule h(t): t, t2 (t^2), t2-over-1-t (t^2/(1-t)) or learnable", choices=SCHEDULES
    )
    critic: str = setting(
        "iql", "iql: in-sample expectile critic; td: TD target with next actions from the flow", choices=("iql", "td")
    )
    expectile: float = setting(0.9, "expectile of the IQL value regression", above=0, below=1)


class FlowQ(Agent[FlowQConfig]):
    name = "flowq"
    config_class = FlowQConfig
    policy_network = "flow"
    target_models = ("critic",)

    def build_models(self, seed: int) -> dict[str, keras.Model]:
        c, obs, act = self.config, self.obs_dim, self.action_dim
        models = {
            "critic": CriticEnsemble(obs, act, c.critic_hidden, c.critic_layer_norm, seed=derive_seed(seed, 0)),
            "flow": VelocityField(obs, act, c.actor_hidden, c.actor_layer_norm, seed=derive_seed(seed, 1)),
        }
        if c.critic == "iql":
            models["value"] = StateValue(obs, c.critic_hidden, c.critic_layer_norm, seed=derive_seed(seed, 3))
        if c.schedule == "learnable":
            models["schedule"] = LearnedSchedule(seed=derive_seed(seed, 4))
        return models

    def schedule(self, params: Params, t: jax.Array) -> jax.Array:
        if self.config.schedule == "learnable":
            return self.apply("schedule", params, t)
        return energy_schedule(self.config.schedule, t)

    def loss(self, params: Params, target_params: Params, batch: Transitions, key: jax.Array, step: jax.Array):
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
        x0, t, x_t = interpolate(batch.actions, path_key)
        grad_q = jax.grad(lambda x: policy_value(self, params, batch.observations, x).sum())(x_t)
        g = self.schedule(params, t)
        target = (batch.actions - x0) + c.lam * g * grad_q
        flow_loss = jnp.mean((self.apply("flow", params, batch.observations, x_t, t) - target) ** 2)

        metrics.update(
            flow_loss=flow_loss, guidance_norm=jnp.linalg.norm(grad_q, axis=-1).mean(), schedule_mean=g.mean()
        )
        return {"critic": critic_loss, "value": value_loss, "flow": flow_loss}, metrics

    def policy(self, params: Params, observations: jax.Array, noise: jax.Array) -> jax.Array:
        return jnp.clip(flow_actions(self, params, observations, noise), -1, 1)

    def policy_model(self) -> keras.Model:
        return FlowPolicy(self.models["flow"], solver=self.config.solver, steps=self.config.flow_steps)
