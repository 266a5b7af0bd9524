"""The agent interface every method implements, the update machinery and the settings they all share.

An agent is a set of Keras models plus pure functions over a state pytree (TrainState): `init` makes the state
from a seed, `update` takes one Adam step on the method's loss (optax.adam's update, written out in `adam_step`)
and the Polyak step of its target networks,
`policy` maps (observations, noise) to actions. The models themselves hold no training state: they are
called with ``stateless_call`` on the variables in the state, so jit, scan, vmap and grad all apply. A method
writes `build_models`, `loss` (returning a `Loss`), `policy` and `policy_model`, and overrides the optional hooks
declared on `Agent` (`draws`, `noise_shape`, `target_rate`, `intermediate_value`, `actor_q_agg`) where their defaults
do not fit it.
"""

from __future__ import annotations

import abc
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import keras

from flowkit import paths, solvers
from flowkit.settings import ConfigError, Settings, Source, setting
from flowkit.tasks import Transitions

Params = dict[str, list[jax.Array]]
"""The trainable variables of each model, by model name, in Keras' variable order."""


@dataclass(frozen=True)
class AgentConfig(Settings):
    """Settings every method has (defaults of the public FQL code). A method's settings class names the method
    as reports and help texts show it (`display_name`)."""

    section = "agent"
    display_name: ClassVar[str]
    default_source = Source(
        "paper", "seohongpark/fql agents/fql.py get_config @719d044 (the value-flows and Q-Flow codes share them)"
    )
    constraint_settings: ClassVar[tuple[str, ...]] = ()
    """Coefficients that hold the policy to the data; on a real task each must come from a source, a study or
    `--set` (flowkit.run_config refuses a run where one has no source)."""

    lr: float = setting(3e-4, "Adam learning rate", above=0)
    batch_size: int = setting(256, "transitions per update", low=1)
    actor_hidden: tuple[int, ...] = setting((512, 512, 512, 512), "hidden widths of the policy networks")
    actor_layer_norm: bool = setting(False, "LayerNorm after each hidden activation of the policy networks")

    def coefficients(self) -> dict[str, float]:
        """The real-valued settings (alpha, lambda, discount, tau, ...): compiled training takes them as arguments
        rather than constants, so that runs differing only in them share one program."""
        return {name: getattr(self, name) for name, kind in self.setting_types().items() if kind is float}


@dataclass(frozen=True)
class CriticConfig(AgentConfig):
    """Settings of every method that learns values."""

    discount: float = setting(0.99, "discount factor gamma", low=0, high=1)
    tau: float = setting(0.005, "Polyak rate of the target networks", above=0, high=1)
    critic_hidden: tuple[int, ...] = setting((512, 512, 512, 512), "hidden widths of the value networks")
    critic_layer_norm: bool = setting(True, "LayerNorm after each hidden activation of the value networks")
    q_agg: str = setting("mean", "aggregation of the critic ensemble in TD targets", choices=("mean", "min"))


@dataclass(frozen=True)
class FlowConfig(AgentConfig):
    """Settings of every method with a flow policy: how the flow is integrated wherever it is used."""

    solver: str = setting("euler", "ODE solver for every use of the flow", choices=tuple(solvers.SOLVERS))
    flow_steps: int = setting(10, "solver steps K from t = 0 to 1", low=1)
    path: str = setting(
        "linear", "probability path of flow matching: x_t and its target (docs/methods.md)", choices=paths.PATHS
    )

    def require_linear_path(self) -> None:
        """Refuse another path for a method whose guidance term was derived on the linear path only."""
        if self.path != "linear":
            raise ConfigError(
                f"path: {self.path!r} for {self.display_name}, whose guidance term is derived for the linear path "
                "only (docs/methods.md#probability-paths); allowed: linear"
            )


ConfigT = TypeVar("ConfigT", bound=AgentConfig)


ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
"""optax.adam's defaults, which the public codes use."""


class AdamState(NamedTuple):
    count: jax.Array
    """Updates taken (int32)."""
    mu: Params
    """First moments, like the parameters."""
    nu: Params
    """Second moments, like the parameters."""


def adam_init(params: Params) -> AdamState:
    return AdamState(
        jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params)
    )


def adam_step(grads: Params, state: AdamState, params: Params, lr: jax.Array | float) -> tuple[Params, AdamState]:
    """One step of optax.adam(lr) (the public codes' optimiser), operation for operation: epsilon is added to
    sqrt(nu_hat) after bias correction. Keras' Adam adds it before (epsilon 1e-8 there acts like 3e-7 here at the
    first step), which is why the kit does not use it."""
    count = state.count + 1
    mu = jax.tree.map(lambda g, m: (1 - ADAM_B1) * g + ADAM_B1 * m, grads, state.mu)
    nu = jax.tree.map(lambda g, v: (1 - ADAM_B2) * (g * g) + ADAM_B2 * v, grads, state.nu)
    correction1, correction2 = 1 - ADAM_B1**count, 1 - ADAM_B2**count

    def step(p: jax.Array, m: jax.Array, v: jax.Array) -> jax.Array:
        update = (m / correction1.astype(m.dtype)) / (jnp.sqrt(v / correction2.astype(v.dtype)) + ADAM_EPS)
        return p + update * -lr

    return jax.tree.map(step, params, mu, nu), AdamState(count, mu, nu)


class Loss(NamedTuple):
    """What `Agent.loss` returns (a pytree, so it passes through jax.grad's auxiliary output)."""

    terms: dict[str, jax.Array]
    """The loss terms, weighted as they enter the total: the update differentiates their sum."""
    metrics: dict[str, jax.Array]
    """Scalar metrics logged with each update (unweighted losses, critic statistics, ...)."""


class TrainState(NamedTuple):
    params: Params
    target_params: Params
    """Polyak-averaged copies of the models named in Agent.target_models."""
    opt_state: AdamState
    key: jax.Array
    step: jax.Array


class Agent(abc.ABC, Generic[ConfigT]):
    """Base of every method: one Adam optimiser over all its models, Polyak targets, stateless calls."""

    name: ClassVar[str]
    """The method's name in settings, study files and run folders."""
    config_class: ClassVar[type[AgentConfig]]
    policy_network: ClassVar[str]
    """The model the policy's parameters live in (its gradient norm is the policy's)."""
    target_models: ClassVar[tuple[str, ...]] = ()
    config: ConfigT
    """The method's settings. Inside `loss` and the hooks it is the view `with_coefficients` makes: its float
    settings (alpha, lambda, discount, tau, ...) are tracers, arguments of the compiled program, so compute with
    them but never branch on them in Python; sizes, solver, flow steps and choices are plain values."""

    def __init__(self, config: ConfigT, obs_dim: int, action_dim: int):
        self.config, self.obs_dim, self.action_dim = config, obs_dim, action_dim
        self.models = self.build_models(seed=0)
        for name, model in self.models.items():
            if model.non_trainable_variables:
                raise TypeError(f"model {name!r} has non-trainable variables; agents' models must be stateless")

    @abc.abstractmethod
    def build_models(self, seed: int) -> dict[str, keras.Model]:
        """The method's networks, built, with weights initialised from `seed`."""

    @abc.abstractmethod
    def loss(self, params: Params, target_params: Params, batch: Transitions, key: jax.Array, step: jax.Array) -> Loss:
        """The method's weighted loss terms and metrics; the update differentiates their sum w.r.t. `params`.

        Random numbers come from `key` alone (through `draws` where a test feeds them); `step` counts updates from 0.
        """

    @abc.abstractmethod
    def policy(self, params: Params, observations: jax.Array, noise: jax.Array) -> jax.Array:
        """Actions in [-1, 1]^d for the given noise: the way the method acts."""

    @abc.abstractmethod
    def policy_model(self) -> keras.Model:
        """A Keras model computing `policy` from (observations, noise) with the agent's current weights."""

    def with_coefficients(self, values: dict[str, jax.Array]) -> Agent[ConfigT]:
        """This agent with its coefficients (AgentConfig.coefficients) taken from `values`, the traced arguments of a
        compiled program, so that runs differing only in them share the program; models shared."""
        config = copy.copy(self.config)
        for name, value in values.items():
            object.__setattr__(config, name, value)  # a frozen dataclass: this copy alone holds the tracers
        view = copy.copy(self)
        view.config = config
        return view

    # Optional hooks: a method overrides one where its default does not describe it.

    def draws(self, key: jax.Array, batch: Transitions) -> Any:
        """Every random draw of one loss, from its key, so that a test can replace them (tests/test_fidelity.py);
        by default the key itself, for a loss that no test feeds and that splits the key inline."""
        return key

    def target_rate(self, step: jax.Array) -> jax.Array | float:
        """The Polyak rate of the target networks at this update: tau, or 0 on updates that keep them (ReBRAC)."""
        return self.config.tau

    def noise_shape(self, batch_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of the noise `policy` takes: one action's by default, several where acting samples many (IFQL)."""
        return (*batch_shape, self.action_dim)

    def intermediate_value(self, params: Params, observations: jax.Array, x: jax.Array, t: jax.Array) -> jax.Array:
        """The value of the point x at flow time t that the consistency probe follows along the flow: the critic's
        mean Q(s, x) by default (read off the data mid-flow), the intermediate value V(s, x, t) where one is learnt."""
        return self.apply("critic", params, observations, x).mean(axis=0)

    @property
    def actor_q_agg(self) -> str:
        """How the actor reads the critic ensemble, "mean" or "min", and so how the value-bias probe reads Q(s0, a0):
        the mean, as FQL's, FBRAC's and FlowQ's actor losses do, unless a method's actor aggregates otherwise."""
        return "mean"

    def apply(self, model: str, params: Params, *inputs: jax.Array) -> jax.Array:
        """Call one of the models on the given variables (pure; usable under jit and grad)."""
        return self.models[model].stateless_call(params[model], [], *inputs)[0]

    def policy_noise(self, key: jax.Array, observations: jax.Array) -> jax.Array:
        """The noise `policy` takes for these observations, drawn from N(0, I)."""
        return jax.random.normal(key, self.noise_shape(observations.shape[:-1]))

    def act(self, params: Params, observations: jax.Array, key: jax.Array) -> jax.Array:
        return self.policy(params, observations, self.policy_noise(key, observations))

    def explore(self, params: Params, observations: jax.Array, key: jax.Array) -> jax.Array:
        """The action taken while fine-tuning online: the policy's own sample, as the public codes' sample_actions
        at temperature 1 (a method whose evaluation action is deterministic adds its exploration noise)."""
        return self.act(params, observations, key)

    def init(self, seed: int) -> TrainState:
        models = self.build_models(seed)
        params = {name: [jnp.array(v.value) for v in model.trainable_variables] for name, model in models.items()}
        return TrainState(
            params=params,
            target_params={name: [jnp.copy(p) for p in params[name]] for name in self.target_models},
            opt_state=adam_init(params),
            key=jax.random.PRNGKey(seed),
            step=jnp.zeros((), jnp.int32),
        )

    def update(
        self, state: TrainState, batch: Transitions, term_grad_norms: bool = False
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        """One Adam step on the total loss and the Polyak step of the target networks, in the public codes' order.

        The metrics hold each loss term, each model's gradient norm and, with `term_grad_norms`, each term's
        gradient norm on each model; the terms are then differentiated one by one (XLA shares their forward
        pass, but backward passes through networks that several terms use are repeated).
        """
        key, loss_key = jax.random.split(state.key)

        def loss_terms(params: Params) -> Loss:
            return self.loss(params, state.target_params, batch, loss_key, state.step)

        def total(params: Params) -> tuple[jax.Array, Loss]:
            loss = loss_terms(params)
            return sum(loss.terms.values()), loss

        names = list(self.models)
        if term_grad_norms:
            terms, metrics = loss_terms(state.params)
            per_term = {term: jax.grad(lambda p, term=term: loss_terms(p).terms[term])(state.params) for term in terms}
            grads = jax.tree.map(lambda *term_grads: sum(term_grads), *per_term.values())
            for term, term_grads in per_term.items():
                for name in names:
                    metrics[f"grad_norm/{name}/{term}"] = global_norm(term_grads[name])
        else:
            grads, (terms, metrics) = jax.grad(total, has_aux=True)(state.params)
        params, opt_state = adam_step(grads, state.opt_state, state.params, self.config.lr)
        # The targets move toward the parameters the loss was computed with, from before this Adam step: every public
        # code does so (fql, rebrac, value-flows' fbrac, qflow: target_update reads self.network.params, the agent's
        # state before apply_loss_fn, and writes into the new network), so targets lag the online networks by one step.
        tau = self.target_rate(state.step) if self.target_models else 0.0
        target_params = {
            name: [tau * p + (1 - tau) * t for p, t in zip(state.params[name], state.target_params[name], strict=True)]
            for name in self.target_models
        }
        for name in names:
            metrics[f"grad_norm/{name}"] = global_norm(grads[name])
        return TrainState(params, target_params, opt_state, key, state.step + 1), metrics

    def write_back(self, state: TrainState) -> None:
        """Copy the state's variables into the Keras models (for saving or eager use)."""
        for name, model in self.models.items():
            for variable, value in zip(model.trainable_variables, state.params[name], strict=True):
                variable.assign(value)

    def save(self, state: TrainState, directory: Path) -> None:
        """Save every model and the acting policy as .keras files."""
        self.write_back(state)
        directory.mkdir(parents=True, exist_ok=True)
        for name, model in self.models.items():
            model.save(directory / f"{name}.keras")
        self.policy_model().save(directory / "policy.keras")


def global_norm(arrays: list[jax.Array]) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in arrays))
