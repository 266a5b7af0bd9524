"""Implicit flow Q-learning (IFQL; the flow variant of IDQL, Hansen-Estruch et al., 2023, as in Park et al., 2025).

The policy is a flow trained only by behaviour cloning; the critic is IQL's, learnt in-sample from the data's
actions. Acting draws `num_samples` actions from the flow and keeps the one the critic values most, so the
policy improves on the data only through this rejection step. Reference: github.com/seohongpark/fql,
agents/ifql.py (value, critic, then flow loss; the target critic averaged from the online one).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import keras

from flowkit.agents.base import Agent, CriticConfig, FlowConfig, Loss, Params
from flowkit.agents.common import (
    FlowPath,
    aggregate,
    critic_and_flow,
    draw_path,
    flow_actions,
    flow_matching_loss,
    iql_losses,
)
from flowkit.networks import BestOfNPolicy, StateValue, best_of, derive_seed
from flowkit.settings import Source, setting
from flowkit.tasks import Transitions


@dataclass(frozen=True)
class IFQLConfig(FlowConfig, CriticConfig):
    display_name = "IFQL"
    default_source = Source("paper", "seohongpark/fql agents/ifql.py get_config @719d044")

    q_agg: str = setting(
        "min",
        "aggregation of the critic ensemble in the value target and for choosing actions",
        choices=("mean", "min"),
    )
    expectile: float = setting(0.9, "expectile of the IQL value regression", above=0, below=1)
    num_samples: int = setting(32, "IFQL: flow samples per observation among which acting keeps the best", low=1)


class IFQL(Agent[IFQLConfig]):
    name = "ifql"
    config_class = IFQLConfig
    policy_network = "flow"
    target_models = ("critic",)

    def build_models(self, seed: int) -> dict[str, keras.Model]:
        c, obs = self.config, self.obs_dim
        return {
            **critic_and_flow(self, seed),
            "value": StateValue(obs, c.critic_hidden, c.critic_layer_norm, seed=derive_seed(seed, 3)),
        }

    def draws(self, key: jax.Array, batch: Transitions) -> FlowPath:
        """Every random draw of one loss, from its key (tests replace it to feed another implementation the same)."""
        return draw_path(batch.actions, key)

    def loss(self, params: Params, target_params: Params, batch: Transitions, key: jax.Array, step: jax.Array) -> Loss:
        c = self.config

        # Value and critic: V(s) by expectile regression onto agg_i Qbar_i(s, a); Q(s, a) onto r + gamma V(s').
        value_loss, critic_loss, metrics = iql_losses(self, params, target_params, batch, c.expectile, c.q_agg)

        # Flow BC: the flow policy clones the data's actions; the critic never trains it.
        bc_flow_loss = flow_matching_loss(self, params, batch, self.draws(key, batch))

        metrics["bc_flow_loss"] = bc_flow_loss
        return Loss({"value": value_loss, "critic": critic_loss, "bc_flow": bc_flow_loss}, metrics)

    @property
    def actor_q_agg(self) -> str:
        """Acting keeps the candidate with the highest q_agg of the critic."""
        return self.config.q_agg

    def noise_shape(self, batch_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*batch_shape, self.config.num_samples, self.action_dim)

    def policy(self, params: Params, observations: jax.Array, noise: jax.Array) -> jax.Array:
        """Of the flow's actions from each observation's `num_samples` noises, the one with the highest Q."""
        repeated = jnp.broadcast_to(observations[..., None, :], (*noise.shape[:-1], observations.shape[-1]))
        candidates = jnp.clip(flow_actions(self, params, repeated, noise), -1, 1)
        values = self.apply("critic", params, repeated, candidates)
        return best_of(candidates, aggregate(values, self.config.q_agg))

    def policy_model(self) -> keras.Model:
        c = self.config
        return BestOfNPolicy(
            self.models["flow"], critic=self.models["critic"], solver=c.solver, steps=c.flow_steps, q_agg=c.q_agg
        )
