"""Keras models of the methods: velocity field, one-step policy, critic ensemble, and the saved policies.

Every model is built at construction from its input sizes, with kernels initialised from an explicit seed, so
the same seed gives the same weights without touching global random state. Agents call the models through
``stateless_call`` inside jit; trained weights are written back into them for saving in the .keras format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def parameter_counts(models: Mapping[str, keras.Model]) -> dict[str, int]:
    """Each model's number of weights, by name: the size comparison of flow, one-step and Gaussian policies that
    reviewers ask for, recorded with every run so that reports need not build the models."""
    return {name: int(model.count_params()) for name, model in models.items()}


@register
class MLP(keras.layers.Layer):
    """Dense layers with GELU, optional LayerNorm after each hidden activation, Glorot-uniform kernels.

    `final_scale` scales the last layer's Glorot variance (ReBRAC starts its actor near zero with 0.01).
    """

    def __init__(
        self,
        input_dim: int,
        hidden: Sequence[int],
        output_dim: int,
        layer_norm: bool = False,
        seed: int = 0,
        final_scale: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.input_dim, self.hidden, self.output_dim = input_dim, tuple(hidden), output_dim
        self.layer_norm, self.seed, self.final_scale = layer_norm, seed, final_scale
        widths = (*self.hidden, output_dim)
        self.dense = []
        self.norms = []
        fan_in = input_dim
        for index, width in enumerate(widths):
            scale = final_scale if index == len(self.hidden) else 1.0
            initializer = keras.initializers.VarianceScaling(scale, "fan_avg", "uniform", seed=derive_seed(seed, index))
            dense = keras.layers.Dense(width, kernel_initializer=initializer)
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
            "final_scale": self.final_scale,
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


MAX_FREQUENCY = 256.0
"""Q-Flow's Fourier time features (the public agents/qflow.py fourier_time_embed): [sin(f t), cos(f t)] for
width / 2 fixed frequencies f log-spaced from 1 to 256, nothing learnt."""


def time_features(t: jax.Array, kind: str, width: int) -> jax.Array:
    """Raw t, or its `width` Fourier features (width even)."""
    if kind == "raw":
        return t
    frequencies = np.geomspace(1.0, MAX_FREQUENCY, width // 2)
    angles = t * jnp.asarray(frequencies, t.dtype)
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


@register
class FlowValueEnsemble(_ConfiguredModel):
    """V_1..V_n(s, x, t): Q-Flow's intermediate value of a point x at flow time t, shape (n, batch)."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: Sequence[int],
        layer_norm: bool = True,
        ensemble_size: int = 2,
        time_kind: str = "fourier",
        time_width: int = 16,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(
            obs_dim=obs_dim,
            action_dim=action_dim,
            hidden=list(hidden),
            layer_norm=layer_norm,
            ensemble_size=ensemble_size,
            time_kind=time_kind,
            time_width=time_width,
            seed=seed,
            **kwargs,
        )
        self.time_kind, self.time_width = time_kind, time_width
        width = obs_dim + action_dim + time_features(jnp.zeros((1, 1)), time_kind, time_width).shape[-1]
        self.members = [MLP(width, hidden, 1, layer_norm, derive_seed(seed, member)) for member in range(ensemble_size)]
        self.built = True

    def call(self, observations: jax.Array, x: jax.Array, t: jax.Array) -> jax.Array:
        inputs = jnp.concatenate([observations, x, time_features(t, self.time_kind, self.time_width)], axis=-1)
        return jnp.stack([member(inputs)[..., 0] for member in self.members])


@register
class StateValue(_ConfiguredModel):
    """V(s): the in-sample value of IQL-style critics, shape (batch,)."""

    def __init__(self, obs_dim: int, hidden: Sequence[int], layer_norm: bool = True, seed: int = 0, **kwargs: Any):
        super().__init__(obs_dim=obs_dim, hidden=list(hidden), layer_norm=layer_norm, seed=seed, **kwargs)
        self.mlp = MLP(obs_dim, hidden, 1, layer_norm, seed)
        self.built = True

    def call(self, observations: jax.Array) -> jax.Array:
        return self.mlp(observations)[..., 0]


@register
class GaussianPolicy(_ConfiguredModel):
    """A Gaussian over pre-squash actions: returns (mean, log_std), the log-std clipped to [-5, 2]. Without
    `state_std` the network outputs only the mean and the std is 1 for every state (OGBench's const_std)."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: Sequence[int],
        layer_norm: bool = False,
        final_scale: float = 1.0,
        seed: int = 0,
        state_std: bool = True,
        **kwargs: Any,
    ):
        super().__init__(
            obs_dim=obs_dim,
            action_dim=action_dim,
            hidden=list(hidden),
            layer_norm=layer_norm,
            final_scale=final_scale,
            seed=seed,
            state_std=state_std,
            **kwargs,
        )
        self.action_dim, self.state_std = action_dim, state_std
        self.mlp = MLP(obs_dim, hidden, (2 if state_std else 1) * action_dim, layer_norm, seed, final_scale)
        self.built = True

    def call(self, observations: jax.Array) -> tuple[jax.Array, jax.Array]:
        outputs = self.mlp(observations)
        mean = outputs[..., : self.action_dim]
        if not self.state_std:
            return mean, jnp.zeros_like(mean)
        return mean, jnp.clip(outputs[..., self.action_dim :], -5.0, 2.0)


class _ActingModel(keras.Model):
    """An acting policy, (observations, noise) -> actions in [-1, 1]^d, around one trained network.

    Subclasses list their other constructor arguments in `settings`; the network and the settings are the
    model's config, so a saved policy reloads with keras.saving.load_model.
    """

    settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, network: keras.Model, **kwargs: Any):
        values = {name: kwargs.pop(name) for name in self.settings}
        super().__init__(**kwargs)
        self.network = network
        for name, value in values.items():
            setattr(self, name, value)
        self.built = True

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "network": keras.saving.serialize_keras_object(self.network),
            **{name: getattr(self, name) for name in self.settings},
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> _ActingModel:
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)


@register
class ClippedPolicy(_ActingModel):
    """The acting policy of a one-step method: a = clip(mu(s, z), -1, 1)."""

    def call(self, observations: jax.Array, noise: jax.Array) -> jax.Array:
        return jnp.clip(self.network(observations, noise), -1.0, 1.0)


@register
class FlowPolicy(_ActingModel):
    """The acting policy of a flow method: a = clip(Psi_{0->1}(s, z)) with the configured solver and steps."""

    settings = ("solver", "steps")

    def call(self, observations: jax.Array, noise: jax.Array) -> jax.Array:
        actions = solvers.integrate(
            lambda x, t: self.network(observations, x, t), noise, solver=self.solver, steps=self.steps
        )
        return jnp.clip(actions, -1.0, 1.0)


def best_of(candidates: jax.Array, values: jax.Array) -> jax.Array:
    """candidates (..., n, d) and their values (..., n) -> each row's candidate of highest value, (..., d)."""
    best = jnp.argmax(values, axis=-1)
    return jnp.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]


@register
class BestOfNPolicy(_ActingModel):
    """The acting policy of rejection sampling (IFQL): of the flow's actions from n noises per observation, the
    one the critic ensemble (aggregated by min or mean) values most. Noise has shape (batch, n, action_dim)."""

    settings = ("critic", "solver", "steps", "q_agg")

    def call(self, observations: jax.Array, noise: jax.Array) -> jax.Array:
        repeated = jnp.broadcast_to(observations[..., None, :], (*noise.shape[:-1], observations.shape[-1]))
        velocity = lambda x, t: self.network(repeated, x, t)  # noqa: E731
        candidates = jnp.clip(solvers.integrate(velocity, noise, solver=self.solver, steps=self.steps), -1.0, 1.0)
        values = self.critic(repeated, candidates)
        return best_of(candidates, values.min(axis=0) if self.q_agg == "min" else values.mean(axis=0))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "critic": keras.saving.serialize_keras_object(self.critic)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BestOfNPolicy:
        return super().from_config({**config, "critic": keras.saving.deserialize_keras_object(config["critic"])})


@register
class GaussianActing(_ActingModel):
    """The acting policy of a Gaussian method: its mode or a sample, squashed by tanh or clipped to [-1, 1]."""

    settings = ("squash", "sample")

    def call(self, observations: jax.Array, noise: jax.Array) -> jax.Array:
        mean, log_std = self.network(observations)
        actions = mean + jnp.exp(log_std) * noise if self.sample else mean
        return jnp.clip(jnp.tanh(actions) if self.squash == "tanh" else actions, -1.0, 1.0)
