"""Gaussian behaviour cloning: maximum likelihood of the data's actions under a state-conditioned Gaussian.

The "Gaussian" column of the expressivity ablation, in two variants. By default the network outputs a mean and
a state-dependent std over pre-squash actions, mapped to [-1, 1]^d by tanh (likelihood with the change of
variables). OGBench's goal-conditioned BC (impls/agents/gcbc.py: GCActor with state_dependent_std=False and
const_std=True, no tanh) is std="constant", squash="clip": the std is 1 for every state, so the likelihood is a
squared error on the raw actions, and acting with the mode takes the mean, clipped to the action box as
OGBench's evaluation does. Either acts with its mode (the public codes' evaluation) or a sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import keras

from flowkit.agents.base import Agent, AgentConfig, Loss, Params
from flowkit.networks import GaussianActing, GaussianPolicy, derive_seed
from flowkit.settings import Source, setting
from flowkit.tasks import Transitions

EDGE = 1e-6
"""Actions are kept this far inside (-1, 1) before atanh, and the tanh Jacobian this far from 0."""


def gaussian_log_likelihood(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    return jnp.sum(-0.5 * ((x - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


@dataclass(frozen=True)
class GaussianBCConfig(AgentConfig):
    display_name = "Gaussian BC"
    default_source = Source("kit", "the expressivity ablation's Gaussian baseline (tanh or OGBench's GCBC form)")

    std: str = setting(
        "state",
        "state: a learnt state-dependent std; constant: std 1 in every state (OGBench's GCBC)",
        choices=("state", "constant"),
    )
    squash: str = setting(
        "tanh",
        "map from the Gaussian to [-1, 1]^d: tanh, or clip (no squashing: OGBench's GCBC)",
        choices=("tanh", "clip"),
    )
    act_with: str = setting(
        "mode", "act with the mode (the public code's evaluation) or a sample", choices=("mode", "sample")
    )


class GaussianBC(Agent[GaussianBCConfig]):
    name = "gaussian-bc"
    config_class = GaussianBCConfig
    policy_network = "actor"

    def build_models(self, seed: int) -> dict[str, keras.Model]:
        c = self.config
        return {
            "actor": GaussianPolicy(
                self.obs_dim,
                self.action_dim,
                c.actor_hidden,
                c.actor_layer_norm,
                seed=derive_seed(seed, 1),
                state_std=c.std == "state",
            )
        }

    def loss(self, params: Params, target_params: Params, batch: Transitions, key: jax.Array, step: jax.Array) -> Loss:
        mean, log_std = self.apply("actor", params, batch.observations)
        if self.config.squash == "tanh":
            actions = jnp.clip(batch.actions, -1 + EDGE, 1 - EDGE)
            log_likelihood = gaussian_log_likelihood(jnp.arctanh(actions), mean, log_std) - jnp.sum(
                jnp.log(1 - actions**2 + EDGE), axis=-1
            )
        else:
            log_likelihood = gaussian_log_likelihood(batch.actions, mean, log_std)
        nll = -log_likelihood.mean()
        return Loss({"nll": nll}, {"nll": nll, "std": jnp.exp(log_std).mean()})

    def policy(self, params: Params, observations: jax.Array, noise: jax.Array) -> jax.Array:
        mean, log_std = self.apply("actor", params, observations)
        actions = mean + jnp.exp(log_std) * noise if self.config.act_with == "sample" else mean
        return jnp.clip(jnp.tanh(actions) if self.config.squash == "tanh" else actions, -1, 1)

    def policy_model(self) -> keras.Model:
        return GaussianActing(self.models["actor"], squash=self.config.squash, sample=self.config.act_with == "sample")
