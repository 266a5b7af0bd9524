"""Q-Flow: value propagation along the flow (arXiv 2605.13435, 2026).

Flow dynamics are deterministic, so the value of a point x_t at flow time t is the value of where the flow
takes it: V(s, x_t, t) = Q(s, Psi_{t->1}(s, x_t)). Q-Flow learns this intermediate value V_phi and guides the
flow policy with its gradient at the data interpolant, so the policy never backpropagates through the solver.
Reference: github.com/jaehyeokdoo2/qflow, agents/qflow.py, where lambda is written 1 / guidance_lambda (1 / alpha
in earlier versions); per-domain values are the task families' defaults (docs/methods.md).

Losses, in the paper's order: the outer critic (TD, next actions from the full flow); the intermediate value,
regressed onto the target critic at the flow's end point from x_t; the guided flow-matching loss. Every solve
(next actions, Psi_{t->1} from each sample's own t, acting) uses the configured solver and flow steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import keras

from flowkit.agents.base import Agent, CriticConfig, FlowConfig, Loss, Params
from flowkit.agents.common import FlowPath, aggregate, critic_and_flow, draw_path, flow_actions, path_point, td_loss
from flowkit.networks import FlowPolicy, FlowValueEnsemble, derive_seed
from flowkit.settings import ConfigError, Source, setting
from flowkit.tasks import Transitions

BANDIT_TIME = Source(
    "kit",
    "16 Fourier features of the public form, for the bandits (the public default is raw t; its per-domain widths "
    "are the OGBench family's)",
)


@dataclass(frozen=True)
class QFlowConfig(FlowConfig, CriticConfig):
    display_name = "Q-Flow"
    default_source = Source("paper", "jaehyeokdoo2/qflow agents/qflow.py get_config @703bda9")
    constraint_settings = ("lam",)

    lam: float = setting(
        1.0,
        "Q-Flow: scale of the intermediate value's gradient (the public code's 1/guidance_lambda)",
        low=0,
        source=Source("paper", "jaehyeokdoo2/qflow agents/qflow.py guidance_lambda=1.0 @8e788e5"),
    )
    time_features: str = setting(
        "fourier", "time input of V(s, x, t): Fourier features or raw t", choices=("fourier", "raw"), source=BANDIT_TIME
    )
    time_embed_dim: int = setting(
        16, "Q-Flow: Fourier features of t fed to V (even; unused with raw t)", low=2, source=BANDIT_TIME
    )

    def check(self) -> None:
        self.require_linear_path()
        if self.time_embed_dim % 2:
            raise ConfigError(
                f"time_embed_dim: {self.time_embed_dim} is odd; allowed: an even integer (sines and cosines in pairs)"
            )


class QFlowDraws(NamedTuple):
    """The random draws of one Q-Flow loss."""

    next_noise: jax.Array
    """z' of the next actions in the TD target."""
    path: FlowPath
    """(x0, t) of the intermediate value's regression and of the guided flow matching (one draw for both)."""


class QFlow(Agent[QFlowConfig]):
    name = "qflow"
    config_class = QFlowConfig
    policy_network = "flow"
    target_models = ("critic",)

    def build_models(self, seed: int) -> dict[str, keras.Model]:
        c, obs, act = self.config, self.obs_dim, self.action_dim
        return {
            **critic_and_flow(self, seed),
            "value": FlowValueEnsemble(
                obs,
                act,
                c.critic_hidden,
                c.critic_layer_norm,
                time_kind=c.time_features,
                time_width=c.time_embed_dim,
                seed=derive_seed(seed, 3),
            ),
        }

    def intermediate_value(self, params: Params, observations: jax.Array, x: jax.Array, t: jax.Array) -> jax.Array:
        """mean_j V_j(s, x, t): the value Q-Flow assigns to x at flow time t."""
        return self.apply("value", params, observations, x, t).mean(axis=0)

    @property
    def actor_q_agg(self) -> str:
        """The actor follows V, which regresses onto the q_agg of the critic."""
        return self.config.q_agg

    def draws(self, key: jax.Array, batch: Transitions) -> QFlowDraws:
        next_key, path_key = jax.random.split(key)
        return QFlowDraws(self.policy_noise(next_key, batch.next_observations), draw_path(batch.actions, path_key))

    def loss(self, params: Params, target_params: Params, batch: Transitions, key: jax.Array, step: jax.Array) -> Loss:
        c = self.config
        drawn = self.draws(key, batch)
        frozen = jax.lax.stop_gradient(params)
        s = batch.observations

        # Outer critic: y = r + gamma * mask * agg_i Qbar_i(s', clip(Psi_{0->1}(s', z'))).
        next_actions = self.policy(frozen, batch.next_observations, drawn.next_noise)
        critic_loss, metrics = td_loss(self, params, target_params, batch, next_actions)

        # Intermediate value: agg_j V_j(s, x_t, t) onto agg_i Qbar_i(s, clip(Psi_{t->1}(s, x_t))), no gradient.
        t = drawn.path.t
        x_t, path_velocity = path_point(self, drawn.path, batch.actions)
        end = jnp.clip(flow_actions(self, frozen, s, x_t, t0=t), -1, 1)
        value_target = jax.lax.stop_gradient(aggregate(self.apply("critic", target_params, s, end), c.q_agg))
        value = aggregate(self.apply("value", params, s, x_t, t), c.q_agg)
        value_loss = jnp.mean((value - value_target) ** 2)

        # Policy: v_theta(s, x_t, t) onto (a - x0) + lambda grad_x mean_j V_j(s, x_t, t), a fixed target.
        grad_v = jax.grad(lambda x: self.intermediate_value(frozen, s, x, t).sum())(x_t)
        target = jax.lax.stop_gradient(path_velocity + c.lam * grad_v)
        flow_loss = jnp.mean((self.apply("flow", params, s, x_t, t) - target) ** 2)

        metrics.update(
            value_loss=value_loss,
            flow_loss=flow_loss,
            value_mean=value.mean(),
            guidance_norm=jnp.linalg.norm(grad_v, axis=-1).mean(),
        )
        return Loss({"critic": critic_loss, "value": value_loss, "flow": flow_loss}, metrics)

    def policy(self, params: Params, observations: jax.Array, noise: jax.Array) -> jax.Array:
        return jnp.clip(flow_actions(self, params, observations, noise), -1, 1)

    def policy_model(self) -> keras.Model:
        return FlowPolicy(self.models["flow"], solver=self.config.solver, steps=self.config.flow_steps)
