"""Keras models of the methods: velocity field, one-step policy, critic ensemble, and the saved policies.

Every model is built at construction from its input sizes, with kernels initialised from an explicit seed, so
the same seed gives the same weights without touching global random state. Agents call the models through
``stateless_call`` inside jit; trained weights are written back into them for saving in the .keras format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import keras
import numpy as np

from flowkit import solvers

register = keras.saving.register_keras_serializable(package="flowkit")


def derive_seed(seed: int, *path: int) -> int:
    """A 31-bit seed for one layer of one model, derived from the run seed."""
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0] >> 1)


@register
class MLP(keras.layers.Layer):
    """Dense layers with GELU, optional LayerNorm after each hidden activation, Glorot-uniform kernels."""

    def __init__(
        self,
        input_dim: int,
        hidden: Sequence[int],
        output_dim: int,
        layer_norm: bool = False,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.input_dim, self.hidden, self.output_dim = input_dim, tuple(hidden), output_dim
        self.layer_norm, self.seed = layer_norm, seed
        widths = (*self.hidden, output_dim)
        self.dense = []
        self.norms = []
        fan_in = input_dim
        for index, width in enumerate(widths):
            dense = keras.layers.Dense(
                width, kernel_initializer=keras.initializers.GlorotUniform(seed=derive_seed(seed, index))
            )
            dense.build((None, fan_in))
            self.dense.append(dense)
            if layer_norm and index < len(self.hidden):
                norm = keras.layers.LayerNormalization(epsilon=1e-6)
                norm.build((None, width))
                self.norms.append(norm)
            fan_in = width
        self.built = True

    def call(self, inputs: jax.Array) -> jax.Array:
        h = inputs
        for index, dense in enumerate(self.dense[:-1]):
            h = jax.nn.gelu(dense(h))
            if self.layer_norm:
                h = self.norms[index](h)
        return self.dense[-1](h)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "hidden": list(self.hidden),
            "output_dim": self.output_dim,
            "layer_norm": self.layer_norm,
            "seed": self.seed,
        }


class _ConfiguredModel(keras.Model):
    """A model whose constructor arguments are its config (so .keras files rebuild it exactly)."""

    def __init__(self, **kwargs: Any):
        base = {key: kwargs.pop(key) for key in ("name", "trainable", "dtype") if key in kwargs}
        super().__init__(**base)
        self._arguments = kwargs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._arguments}


class _ActionMLP(_ConfiguredModel):
    """An MLP from the concatenation of the state, an action-sized input and `extra_inputs` more features."""

    extra_inputs: ClassVar[int] = 0

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: Sequence[int],
        layer_norm: bool = False,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(
            obs_dim=obs_dim, action_dim=action_dim, hidden=list(hidden), layer_norm=layer_norm, seed=seed, **kwargs
        )
        self.mlp = MLP(obs_dim + action_dim + self.extra_inputs, hidden, action_dim, layer_norm, seed)
        self.built = True


@register
class VelocityField(_ActionMLP):
    """v_theta(s, x, t): the flow policy's velocity, fed [s, x, t] with raw time."""

    extra_inputs = 1

    def call(self, observations: jax.Array, x: jax.Array, t: jax.Array) -> jax.Array:
        return self.mlp(jnp.concatenate([observations, x, t], axis=-1))


@register
class OneStepPolicy(_ActionMLP):
    """mu_w(s, z): maps noise to an action in one network evaluation."""

    def call(self, observations: jax.Array, noise: jax.Array) -> jax.Array:
        return self.mlp(jnp.concatenate([observations, noise], axis=-1))


@register
class CriticEnsemble(_ConfiguredModel):
    """Q_1..Q_n(s, a): independent MLPs, outputs stacked to shape (n, batch)."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: Sequence[int],
        layer_norm: bool = True,
        ensemble_size: int = 2,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(
            obs_dim=obs_dim,
            action_dim=action_dim,
            hidden=list(hidden),
            layer_norm=layer_norm,
            ensemble_size=ensemble_size,
            seed=seed,
            **kwargs,
        )
        self.members = [
            MLP(obs_dim + action_dim, hidden, 1, layer_norm, derive_seed(seed, member))
            for member in range(ensemble_size)
        ]
        self.built = True

    def call(self, observations: jax.Array, actions: jax.Array) -> jax.Array:
        inputs = jnp.concatenate([observations, actions], axis=-1)
        return jnp.stack([member(inputs)[..., 0] for member in self.members])


@register
class ClippedPolicy(keras.Model):
    """The acting policy of a one-step method: a = clip(mu(s, z), -1, 1)."""

    def __init__(self, policy: keras.Model, **kwargs: Any):
        super().__init__(**kwargs)
        self.policy = policy
        self.built = True

    def call(self, observations: jax.Array, noise: jax.Array) -> jax.Array:
        return jnp.clip(self.policy(observations, noise), -1.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "policy": keras.saving.serialize_keras_object(self.policy)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ClippedPolicy:
        config = dict(config)
        config["policy"] = keras.saving.deserialize_keras_object(config["policy"])
        return cls(**config)


@register
class FlowPolicy(keras.Model):
    """The acting policy of a flow method: a = clip(Psi_{0->1}(s, z)) with the configured solver and steps."""

    def __init__(self, velocity: keras.Model, solver: str, steps: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.velocity, self.solver, self.steps = velocity, solver, steps
        self.built = True

    def call(self, observations: jax.Array, noise: jax.Array) -> jax.Array:
        actions = solvers.integrate(
            lambda x, t: self.velocity(observations, x, t), noise, solver=self.solver, steps=self.steps
        )
        return jnp.clip(actions, -1.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "velocity": keras.saving.serialize_keras_object(self.velocity),
            "solver": self.solver,
            "steps": self.steps,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FlowPolicy:
        config = dict(config)
        config["velocity"] = keras.saving.deserialize_keras_object(config["velocity"])
        return cls(**config)
