"""A hand-written pure-JAX FQL update: the yardstick `flowkit bench step` times flowkit's update against.

Same mathematics as flowkit.agents.fql (critic ensemble of two, flow BC, distillation onto the clipped flow
solve, Q loss, one Adam step on the summed loss, Polyak target from the critic before that step, as in the
public code), but with plain parameter pytrees, hand-written MLPs and a hand-written Adam, and no Keras. Kept
outside the library on purpose: it is only a baseline.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

Layer = dict[str, jax.Array]


def init_mlp(key: jax.Array, sizes: Sequence[int], layer_norm: bool) -> list[Layer]:
    """Glorot-uniform kernels, zero biases; LayerNorm scale 1 and offset 0 after each hidden layer."""
    layers = []
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        key, sub = jax.random.split(key)
        limit = jnp.sqrt(6.0 / (fan_in + fan_out))
        layer = {"w": jax.random.uniform(sub, (fan_in, fan_out), minval=-limit, maxval=limit), "b": jnp.zeros(fan_out)}
        if layer_norm and index < len(sizes) - 2:
            layer.update(scale=jnp.ones(fan_out), offset=jnp.zeros(fan_out))
        layers.append(layer)
    return layers


def mlp(layers: list[Layer], x: jax.Array) -> jax.Array:
    for layer in layers[:-1]:
        x = jax.nn.gelu(x @ layer["w"] + layer["b"])
        if "scale" in layer:
            mean = x.mean(-1, keepdims=True)
            var = ((x - mean) ** 2).mean(-1, keepdims=True)
            x = (x - mean) * jax.lax.rsqrt(var + 1e-6) * layer["scale"] + layer["offset"]
    return x @ layers[-1]["w"] + layers[-1]["b"]


def solve(velocity, x: jax.Array, solver: str, steps: int) -> jax.Array:
    h = 1.0 / steps
    for k in range(steps):
        t = jnp.full((*x.shape[:-1], 1), k * h)
        if solver == "euler":
            x = x + h * velocity(x, t)
        elif solver == "midpoint":
            x = x + h * velocity(x + 0.5 * h * velocity(x, t), t + 0.5 * h)
        else:
            k1 = velocity(x, t)
            k2 = velocity(x + 0.5 * h * k1, t + 0.5 * h)
            k3 = velocity(x + 0.5 * h * k2, t + 0.5 * h)
            k4 = velocity(x + h * k3, t + h)
            x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


class ReferenceState(NamedTuple):
    params: dict
    target_critic: list
    moments: dict
    velocities: dict
    count: jax.Array
    key: jax.Array


class ReferenceFQL:
    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        actor_hidden: Sequence[int],
        critic_hidden: Sequence[int],
        *,
        solver: str,
        flow_steps: int,
        alpha: float = 10.0,
        lr: float = 3e-4,
        discount: float = 0.99,
        tau: float = 0.005,
    ):
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.actor_hidden, self.critic_hidden = tuple(actor_hidden), tuple(critic_hidden)
        self.solver, self.flow_steps, self.alpha = solver, flow_steps, alpha
        self.lr, self.discount, self.tau = lr, discount, tau

    def init(self, seed: int) -> ReferenceState:
        keys = jax.random.split(jax.random.PRNGKey(seed), 5)
        o, a, actor, critic = self.obs_dim, self.action_dim, self.actor_hidden, self.critic_hidden
        params = {
            "critic": [init_mlp(keys[i], (o + a, *critic, 1), layer_norm=True) for i in range(2)],
            "flow": init_mlp(keys[2], (o + a + 1, *actor, a), layer_norm=False),
            "onestep": init_mlp(keys[3], (o + a, *actor, a), layer_norm=False),
        }
        return ReferenceState(
            params,
            jax.tree.map(jnp.copy, params["critic"]),
            jax.tree.map(jnp.zeros_like, params),
            jax.tree.map(jnp.zeros_like, params),
            jnp.zeros((), jnp.int32),
            keys[4],
        )

    def critic(self, members: list, obs: jax.Array, actions: jax.Array) -> jax.Array:
        inputs = jnp.concatenate([obs, actions], -1)
        return jnp.stack([mlp(member, inputs)[..., 0] for member in members])

    def loss(self, params: dict, target_critic: list, batch, key: jax.Array):
        obs, actions = batch.observations, batch.actions
        next_key, x0_key, t_key, noise_key = jax.random.split(key, 4)
        frozen = jax.lax.stop_gradient(params)
        next_noise = jax.random.normal(next_key, actions.shape)
        next_actions = jnp.clip(
            mlp(frozen["onestep"], jnp.concatenate([batch.next_observations, next_noise], -1)), -1, 1
        )
        next_q = self.critic(target_critic, batch.next_observations, next_actions).mean(0)
        target = jax.lax.stop_gradient(batch.rewards + self.discount * batch.masks * next_q)
        critic_loss = jnp.mean((self.critic(params["critic"], obs, actions) - target) ** 2)

        x0 = jax.random.normal(x0_key, actions.shape)
        t = jax.random.uniform(t_key, (actions.shape[0], 1))
        x_t = (1 - t) * x0 + t * actions
        bc_loss = jnp.mean((mlp(params["flow"], jnp.concatenate([obs, x_t, t], -1)) - (actions - x0)) ** 2)

        noise = jax.random.normal(noise_key, actions.shape)
        teacher = solve(
            lambda x, s: mlp(frozen["flow"], jnp.concatenate([obs, x, s], -1)), noise, self.solver, self.flow_steps
        )
        student = mlp(params["onestep"], jnp.concatenate([obs, noise], -1))
        distill_loss = jnp.mean((student - jnp.clip(teacher, -1, 1)) ** 2)
        q_loss = -self.critic(frozen["critic"], obs, jnp.clip(student, -1, 1)).mean()
        return critic_loss + bc_loss + self.alpha * distill_loss + q_loss

    def update(self, state: ReferenceState, batch) -> ReferenceState:
        key, loss_key = jax.random.split(state.key)
        grads = jax.grad(self.loss)(state.params, state.target_critic, batch, loss_key)
        count = state.count + 1
        moments = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, state.moments, grads)
        velocities = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, state.velocities, grads)
        correction1, correction2 = 1 - 0.9**count, 1 - 0.999**count
        params = jax.tree.map(
            lambda p, m, v: p - self.lr * (m / correction1) / (jnp.sqrt(v / correction2) + 1e-8),
            state.params,
            moments,
            velocities,
        )
        # The public codes' order: the target moves toward the critic from before the Adam step.
        target = jax.tree.map(
            lambda p, t: self.tau * p + (1 - self.tau) * t, state.params["critic"], state.target_critic
        )
        return ReferenceState(params, target, moments, velocities, count, key)

    def chunk(self, batch_size: int, length: int):
        """(state, dataset, key) -> (state, key): `length` updates in one lax.scan, each on a minibatch drawn
        uniformly with replacement from the dataset on the device, as flowkit's training chunk draws them."""

        def run(state: ReferenceState, dataset, key: jax.Array):
            def one_update(carry, _):
                state, key = carry
                key, batch_key = jax.random.split(key)
                index = jax.random.randint(batch_key, (batch_size,), 0, dataset.rewards.shape[0])
                return (self.update(state, jax.tree.map(lambda column: column[index], dataset)), key), None

            return jax.lax.scan(one_update, (state, key), None, length=length)[0]

        return run
