"""Flow behaviour cloning: flow matching on the data's actions, acting with the full flow.

The behaviour-cloning baseline every flow method is measured against, and the "Full Flow" column of the
expressivity ablation (no critic, no reward).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import keras

from flowkit.agents.base import Agent, FlowConfig, Loss, Params
from flowkit.agents.common import draw_path, flow_actions, flow_matching_loss
from flowkit.networks import FlowPolicy, VelocityField, derive_seed
from flowkit.tasks import Transitions


@dataclass(frozen=True)
class FlowBCConfig(FlowConfig):
    """Flow behaviour cloning has no settings beyond the flow's."""

    display_name = "Flow BC"


class FlowBC(Agent[FlowBCConfig]):
    name = "flow-bc"
    config_class = FlowBCConfig
    policy_network = "flow"

    def build_models(self, seed: int) -> dict[str, keras.Model]:
        c = self.config
        return {
            "flow": VelocityField(
                self.obs_dim, self.action_dim, c.actor_hidden, c.actor_layer_norm, seed=derive_seed(seed, 1)
            )
        }

    def loss(self, params: Params, target_params: Params, batch: Transitions, key: jax.Array, step: jax.Array) -> Loss:
        bc_flow_loss = flow_matching_loss(self, params, batch, draw_path(batch.actions, key))
        return Loss({"bc_flow": bc_flow_loss}, {"bc_flow_loss": bc_flow_loss})

    def policy(self, params: Params, observations: jax.Array, noise: jax.Array) -> jax.Array:
        return jnp.clip(flow_actions(self, params, observations, noise), -1, 1)

    def policy_model(self) -> keras.Model:
        return FlowPolicy(self.models["flow"], solver=self.config.solver, steps=self.config.flow_steps)
