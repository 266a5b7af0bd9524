"""ReBRAC (Tarasov et al., 2023): the Gaussian actor-critic baseline with behaviour-cloning penalties.

TD3+BC with LayerNorm critics: a deterministic tanh actor maximises the normalised value minus alpha_actor
times its squared distance to the data's action; the critic's target subtracts alpha_critic times the
squared distance of the smoothed target action to the data's next action. The actor and the targets move
every `actor_freq` updates, from the actor_freq-th on (the public main.py counts updates from 1 and updates the
actor when the count is a multiple of actor_freq). Reference: github.com/seohongpark/fql, agents/rebrac.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import keras

from flowkit.agents.base import Agent, CriticConfig, Loss, Params
from flowkit.agents.common import aggregate, policy_value, q_maximisation_loss, q_regression
from flowkit.networks import CriticEnsemble, GaussianActing, GaussianPolicy, derive_seed
from flowkit.settings import Source, setting
from flowkit.tasks import Transitions

UNREGULARISED = Source(
    "none", "the public code's placeholder 0 (rebrac.py lines 236-237: set per task), which turns ReBRAC's penalty off"
)


@dataclass(frozen=True)
class ReBRACConfig(CriticConfig):
    display_name = "ReBRAC"
    default_source = Source("paper", "seohongpark/fql agents/rebrac.py get_config @719d044")
    constraint_settings = ("alpha_actor", "alpha_critic")

    q_agg: str = setting(
        "min", "aggregation of the critic ensemble in TD targets and for the actor", choices=("mean", "min")
    )
    alpha_actor: float = setting(
        0.0, "ReBRAC: weight of the actor's behaviour cloning penalty", low=0, source=UNREGULARISED
    )
    alpha_critic: float = setting(
        0.0, "ReBRAC: weight of the critic's behaviour cloning penalty", low=0, source=UNREGULARISED
    )
    actor_freq: int = setting(2, "update the actor and the targets every actor_freq updates", low=1)
    actor_noise: float = setting(0.2, "std of the target policy's smoothing noise", low=0)
    actor_noise_clip: float = setting(0.5, "clip of the target policy's smoothing noise", low=0)
    actor_fc_scale: float = setting(0.01, "initialisation scale of the actor's last layer", above=0)


class ReBRACDraws(NamedTuple):
    """The random draws of one ReBRAC loss."""

    target_noise: jax.Array
    """N(0, I) noise of the target policy's smoothing, before scaling by actor_noise and clipping."""


class ReBRAC(Agent[ReBRACConfig]):
    name = "rebrac"
    config_class = ReBRACConfig
    policy_network = "actor"
    target_models = ("critic", "actor")

    def build_models(self, seed: int) -> dict[str, keras.Model]:
        c, obs, act = self.config, self.obs_dim, self.action_dim
        return {
            "critic": CriticEnsemble(obs, act, c.critic_hidden, c.critic_layer_norm, seed=derive_seed(seed, 0)),
            "actor": GaussianPolicy(
                obs, act, c.actor_hidden, c.actor_layer_norm, c.actor_fc_scale, seed=derive_seed(seed, 1)
            ),
        }

    def deterministic_action(self, params: Params, observations: jax.Array) -> jax.Array:
        return jnp.tanh(self.apply("actor", params, observations)[0])

    def actor_step(self, step: jax.Array) -> jax.Array:
        """Whether update number `step` (from 0) moves the actor and the targets: the public code's
        `i % actor_freq == 0` with i = step + 1."""
        return (step + 1) % self.config.actor_freq == 0

    def target_rate(self, step: jax.Array) -> jax.Array:
        return jnp.where(self.actor_step(step), self.config.tau, 0.0)

    def draws(self, key: jax.Array, batch: Transitions) -> ReBRACDraws:
        return ReBRACDraws(jax.random.normal(key, batch.actions.shape))

    def loss(self, params: Params, target_params: Params, batch: Transitions, key: jax.Array, step: jax.Array) -> Loss:
        c = self.config

        # Critic: smoothed target action, penalised by its squared distance to the data's next action.
        next_actions = self.deterministic_action(target_params, batch.next_observations)
        noise = jnp.clip(c.actor_noise * self.draws(key, batch).target_noise, -c.actor_noise_clip, c.actor_noise_clip)
        next_actions = jnp.clip(next_actions + noise, -1, 1)
        next_q = aggregate(self.apply("critic", target_params, batch.next_observations, next_actions), c.q_agg)
        next_q = next_q - c.alpha_critic * jnp.sum((next_actions - batch.next_actions) ** 2, axis=-1)
        critic_loss, metrics = q_regression(self, params, batch, batch.rewards + c.discount * batch.masks * next_q)

        # Actor, on every actor_freq-th update: -Q / mean|Q| + alpha_actor * ||pi(s) - a||^2.
        actions = self.deterministic_action(params, batch.observations)
        q = policy_value(self, params, batch.observations, actions, c.q_agg)
        q_loss = q_maximisation_loss(q, normalize=True)
        bc_loss = c.alpha_actor * jnp.mean(jnp.sum((actions - batch.actions) ** 2, axis=-1))
        actor_step = self.actor_step(step)
        metrics.update(q_loss=q_loss, bc_loss=bc_loss)
        terms = {
            "critic": critic_loss,
            "q": jnp.where(actor_step, q_loss, 0.0),
            "bc": jnp.where(actor_step, bc_loss, 0.0),
        }
        return Loss(terms, metrics)

    @property
    def actor_q_agg(self) -> str:
        """The actor maximises the q_agg of the critic."""
        return self.config.q_agg

    def policy(self, params: Params, observations: jax.Array, noise: jax.Array) -> jax.Array:
        return jnp.clip(self.deterministic_action(params, observations), -1, 1)

    def explore(self, params: Params, observations: jax.Array, key: jax.Array) -> jax.Array:
        """The public ReBRAC's sample_actions at temperature 1: the deterministic action plus N(0, actor_noise^2)
        clipped to +-actor_noise_clip, then clipped to the action box."""
        c = self.config
        noise = c.actor_noise * jax.random.normal(key, (*observations.shape[:-1], self.action_dim))
        noise = jnp.clip(noise, -c.actor_noise_clip, c.actor_noise_clip)
        return jnp.clip(self.deterministic_action(params, observations) + noise, -1, 1)

    def policy_model(self) -> keras.Model:
        return GaussianActing(self.models["actor"], squash="tanh", sample=False)
