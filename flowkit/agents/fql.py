"""Flow Q-learning (FQL; Park, Li and Levine, 2025).

A flow policy v_theta is trained by flow-matching behaviour cloning. A one-step policy mu_w(s, z) is distilled
from the flow's own solve and trained to maximise Q, so neither training nor acting backpropagates through
the ODE solver, and acting costs one network evaluation. Reference: github.com/seohongpark/fql, agents/fql.py.
Only the distillation teacher integrates the flow; it uses the configured solver and flow steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import keras

from flowkit.agents.base import Agent, CriticConfig, FlowConfig, Loss, Params
from flowkit.agents.common import (
    ActorCriticDraws,
    actor_critic_draws,
    critic_and_flow,
    distillation_loss,
    flow_matching_loss,
    policy_value,
    q_maximisation_loss,
    td_loss,
)
from flowkit.networks import ClippedPolicy, OneStepPolicy, derive_seed
from flowkit.settings import Source, setting
from flowkit.tasks import Transitions


@dataclass(frozen=True)
class FQLConfig(FlowConfig, CriticConfig):
    display_name = "FQL"
    default_source = Source("paper", "seohongpark/fql agents/fql.py get_config @719d044")
    constraint_settings = ("alpha",)

    alpha: float = setting(10.0, "FQL: weight of the distillation loss", low=0)
    normalize_q_loss: bool = setting(False, "scale the Q loss by 1 / mean|Q| (stop-gradient)")


class FQL(Agent[FQLConfig]):
    name = "fql"
    config_class = FQLConfig
    policy_network = "onestep"
    target_models = ("critic",)

    def build_models(self, seed: int) -> dict[str, keras.Model]:
        c, obs, act = self.config, self.obs_dim, self.action_dim
        return {
            **critic_and_flow(self, seed),
            "onestep": OneStepPolicy(obs, act, c.actor_hidden, c.actor_layer_norm, seed=derive_seed(seed, 2)),
        }

    def draws(self, key: jax.Array, batch: Transitions) -> ActorCriticDraws:
        return actor_critic_draws(self, key, batch)

    def loss(self, params: Params, target_params: Params, batch: Transitions, key: jax.Array, step: jax.Array) -> Loss:
        c = self.config
        drawn = self.draws(key, batch)

        # Critic: y = r + gamma * mask * agg_i Qbar_i(s', clip(mu_w(s', z'))).
        next_actions = self.policy(jax.lax.stop_gradient(params), batch.next_observations, drawn.next_noise)
        critic_loss, metrics = td_loss(self, params, target_params, batch, next_actions)

        # Flow BC: the flow policy clones the data's actions.
        bc_flow_loss = flow_matching_loss(self, params, batch, drawn.path)

        # Distillation: mu_w(s, z) regresses onto the flow's solve from the same z; no gradient to theta.
        distill_loss, actions = distillation_loss(self, params, batch.observations, drawn.noise)

        # Q: the one-step policy maximises the critic's mean value; no gradient to the critic.
        q = policy_value(self, params, batch.observations, jnp.clip(actions, -1, 1))
        q_loss = q_maximisation_loss(q, c.normalize_q_loss)

        metrics.update(bc_flow_loss=bc_flow_loss, distill_loss=distill_loss, q_loss=q_loss, q_policy=q.mean())
        terms = {"critic": critic_loss, "bc_flow": bc_flow_loss, "distill": c.alpha * distill_loss, "q": q_loss}
        return Loss(terms, metrics)

    def policy(self, params: Params, observations: jax.Array, noise: jax.Array) -> jax.Array:
        return jnp.clip(self.apply("onestep", params, observations, noise), -1, 1)

    def policy_model(self) -> keras.Model:
        return ClippedPolicy(self.models["onestep"])
