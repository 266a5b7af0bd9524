"""Flow behaviour-regularised actor-critic (FBRAC): the backpropagation-through-time baseline.

The flow policy itself maximises Q: L_actor = alpha * L_BC - mean_i Q_i(s, clip(Psi_{0->1}(s, z))), with the
gradient of the Q term flowing back through every solver step. Acting integrates the flow. Reference:
github.com/chongyi-zheng/value-flows, agents/fbrac.py.
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
    flow_actions,
    flow_matching_loss,
    policy_value,
    q_maximisation_loss,
    td_loss,
)
from flowkit.networks import FlowPolicy
from flowkit.settings import Source, setting
from flowkit.tasks import Transitions


@dataclass(frozen=True)
class FBRACConfig(FlowConfig, CriticConfig):
    display_name = "FBRAC"
    default_source = Source("paper", "chongyi-zheng/value-flows agents/fbrac.py get_config @0183335")
    constraint_settings = ("alpha",)

    alpha: float = setting(
        10.0,
        "FBRAC: weight of the flow BC loss against the Q term",
        low=0,
        source=Source(
            "none", "value-flows' placeholder 10; the FQL paper tunes FBRAC's alpha per task and no value is public"
        ),
    )
    normalize_q_loss: bool = setting(False, "scale the Q loss by 1 / mean|Q| (stop-gradient)")


class FBRAC(Agent[FBRACConfig]):
    name = "fbrac"
    config_class = FBRACConfig
    policy_network = "flow"
    target_models = ("critic",)

    def build_models(self, seed: int) -> dict[str, keras.Model]:
        return critic_and_flow(self, seed)

    def draws(self, key: jax.Array, batch: Transitions) -> ActorCriticDraws:
        return actor_critic_draws(self, key, batch)

    def loss(self, params: Params, target_params: Params, batch: Transitions, key: jax.Array, step: jax.Array) -> Loss:
        c = self.config
        drawn = self.draws(key, batch)

        # Critic: the next action comes from the full flow.
        next_actions = self.policy(jax.lax.stop_gradient(params), batch.next_observations, drawn.next_noise)
        critic_loss, metrics = td_loss(self, params, target_params, batch, next_actions)

        # Flow BC, weighted by alpha.
        bc_flow_loss = flow_matching_loss(self, params, batch, drawn.path)

        # Q through the solver: every step of Psi is differentiated (BPTT); no gradient to the critic.
        actions = jnp.clip(flow_actions(self, params, batch.observations, drawn.noise), -1, 1)
        q = policy_value(self, params, batch.observations, actions)
        q_loss = q_maximisation_loss(q, c.normalize_q_loss)

        metrics.update(bc_flow_loss=bc_flow_loss, q_loss=q_loss, q_policy=q.mean())
        return Loss({"critic": critic_loss, "bc_flow": c.alpha * bc_flow_loss, "q": q_loss}, metrics)

    def policy(self, params: Params, observations: jax.Array, noise: jax.Array) -> jax.Array:
        return jnp.clip(flow_actions(self, params, observations, noise), -1, 1)

    def policy_model(self) -> keras.Model:
        return FlowPolicy(self.models["flow"], solver=self.config.solver, steps=self.config.flow_steps)
