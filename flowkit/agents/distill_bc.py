"""One-step distillation behaviour cloning: FQL without its Q term.

Flow BC plus alpha times the distillation of the flow into a one-step policy mu_w(s, z), which acts. The
"One-Step Distillation" column of the expressivity ablation: how much expressivity distillation keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import keras

from flowkit.agents.base import Agent, FlowConfig, Loss, Params
from flowkit.agents.common import distillation_loss, draw_path, flow_matching_loss
from flowkit.networks import ClippedPolicy, OneStepPolicy, VelocityField, derive_seed
from flowkit.settings import Source, setting
from flowkit.tasks import Transitions


@dataclass(frozen=True)
class DistillBCConfig(FlowConfig):
    display_name = "Distilled BC"
    default_source = Source("kit", "the expressivity ablation's one-step distillation, at FQL's default alpha")

    alpha: float = setting(10.0, "weight of the distillation loss", low=0)


class DistillBC(Agent[DistillBCConfig]):
    name = "distill-bc"
    config_class = DistillBCConfig
    policy_network = "onestep"

    def build_models(self, seed: int) -> dict[str, keras.Model]:
        c, obs, act = self.config, self.obs_dim, self.action_dim
        return {
            "flow": VelocityField(obs, act, c.actor_hidden, c.actor_layer_norm, seed=derive_seed(seed, 1)),
            "onestep": OneStepPolicy(obs, act, c.actor_hidden, c.actor_layer_norm, seed=derive_seed(seed, 2)),
        }

    def loss(self, params: Params, target_params: Params, batch: Transitions, key: jax.Array, step: jax.Array) -> Loss:
        bc_key, noise_key = jax.random.split(key)
        bc_flow_loss = flow_matching_loss(self, params, batch, draw_path(batch.actions, bc_key))
        noise = jax.random.normal(noise_key, batch.actions.shape)
        distill_loss, _ = distillation_loss(self, params, batch.observations, noise)
        terms = {"bc_flow": bc_flow_loss, "distill": self.config.alpha * distill_loss}
        return Loss(terms, {"bc_flow_loss": bc_flow_loss, "distill_loss": distill_loss})

    def policy(self, params: Params, observations: jax.Array, noise: jax.Array) -> jax.Array:
        return jnp.clip(self.apply("onestep", params, observations, noise), -1, 1)

    def policy_model(self) -> keras.Model:
        return ClippedPolicy(self.models["onestep"])
