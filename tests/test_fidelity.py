"""The kit against independent transcriptions of the public codes, on the same weights, minibatches and draws.

Each transcription below is written by hand in pure JAX from the public code (seohongpark/fql agents/fql.py,
agents/rebrac.py and agents/ifql.py, chongyi-zheng/value-flows agents/fbrac.py, jaehyeokdoo2/qflow agents/qflow.py,
its fourier_time_embed too), keeping its
order of operations: one loss over the whole parameter tree (targets included, which get no gradient), optax.adam
on it, then the Polyak step from the parameters before the Adam step. The parameters use flax's layout (Dense_i,
LayerNorm_i, ensembles stacked on axis 0); the kit's initial Keras variables are converted into it. The kit's
draws are replaced by the same arrays the transcription uses (each method's `draws`).

The kit's settings are the public defaults (each config class's), except: tiny networks (32, 32); tau 0.5 and
lr 1e-3, so that a Polyak step taken from the wrong parameters would be far outside the tolerance; ReBRAC's
alpha_actor and alpha_critic nonzero (their public default 0 would leave the penalties untested); Q-Flow with the
public code's raw time input and lambda = 1 / (alpha + 1e-8) at its alpha 10 (the kit's own defaults differ:
docs/methods.md).
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flowkit.agents import AGENTS, make_agent
from flowkit.agents.base import adam_init, adam_step
from flowkit.run_config import make_run_config
from flowkit.tasks import Transitions

OBS, ACT, BATCH, UPDATES = 5, 3, 64, 5
TINY = {"actor_hidden": (32, 32), "critic_hidden": (32, 32), "batch_size": BATCH, "tau": 0.5, "lr": 1e-3}
LOSS_RTOL, PARAM_ATOL = 1e-5, 1e-4


# --- The transcriptions' networks (utils/networks.py of the public codes, flax parameter layout) ---------------


def layer_norm(p: dict, x: jax.Array) -> jax.Array:
    """flax.linen.LayerNorm (epsilon 1e-6)."""
    mean = x.mean(-1, keepdims=True)
    var = jnp.maximum((x * x).mean(-1, keepdims=True) - mean * mean, 0.0)
    return (x - mean) * jax.lax.rsqrt(var + 1e-6) * p["scale"] + p["bias"]


def mlp(p: dict, x: jax.Array, activate_final: bool = False) -> jax.Array:
    """The public MLP: Dense, then GELU and LayerNorm (if it has them) after every layer but the last."""
    layers = sum(name.startswith("Dense_") for name in p)
    for i in range(layers):
        x = dense(p[f"Dense_{i}"], x)
        if i + 1 < layers or activate_final:
            x = jax.nn.gelu(x)
            if f"LayerNorm_{i}" in p:
                x = layer_norm(p[f"LayerNorm_{i}"], x)
    return x


def value(p: dict, *inputs: jax.Array) -> jax.Array:
    """Value (and Q-Flow's TimeConditionedCritic): an ensemble of MLPs on the concatenated inputs, (n, batch)."""
    x = jnp.concatenate(inputs, axis=-1)
    return jax.vmap(lambda member: mlp(member, x)[..., 0])(p["value_net"])


def dense(p: dict, x: jax.Array) -> jax.Array:
    return x @ p["kernel"] + p["bias"]


def vector_field(p: dict, *inputs: jax.Array) -> jax.Array:
    """ActorVectorField: one MLP on the concatenated inputs."""
    return mlp(p["mlp"], jnp.concatenate(inputs, axis=-1))


def euler(p: dict, observations: jax.Array, noises: jax.Array, steps: int) -> jax.Array:
    """compute_flow_actions: Euler from t = 0 to 1, clipped."""
    actions = noises
    for i in range(steps):
        t = jnp.full((*observations.shape[:-1], 1), i / steps)
        actions = actions + vector_field(p, observations, actions, t) / steps
    return jnp.clip(actions, -1, 1)


def public_update(loss_fn: Callable, params: dict, opt_state, tx, tau: float, targets: dict[str, str]):
    """TrainState.apply_loss_fn (grad, optax update, apply_updates), then target_update from the old params."""
    grads, info = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    for online, target in targets.items():
        new_params[target] = jax.tree.map(lambda p, tp: p * tau + tp * (1 - tau), params[online], params[target])
    return new_params, opt_state, info


# --- The kit's Keras variables in flax's layout ----------------------------------------------------------------


def flax_mlp(variables: list[jax.Array], index: dict[int, int], keras_mlp) -> dict:
    tree = {
        f"Dense_{i}": {"kernel": variables[index[id(d.kernel)]], "bias": variables[index[id(d.bias)]]}
        for i, d in enumerate(keras_mlp.dense)
    }
    for i, norm in enumerate(keras_mlp.norms):
        tree[f"LayerNorm_{i}"] = {"scale": variables[index[id(norm.gamma)]], "bias": variables[index[id(norm.beta)]]}
    return tree


def to_flax(agent, name: str, variables: list[jax.Array]) -> dict:
    """One kit model's variables as the public code's module parameters."""
    model = agent.models[name]
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    if hasattr(model, "members"):
        members = [flax_mlp(variables, index, member) for member in model.members]
        return {"value_net": jax.tree.map(lambda *m: jnp.stack(m), *members)}
    tree = flax_mlp(variables, index, model.mlp)
    if name != "actor":
        return {"mlp": tree}
    # ReBRAC's actor: the kit's last layer holds the mean's columns, then the log-std's (unused by ReBRAC).
    last = tree.pop(f"Dense_{len(model.mlp.dense) - 1}")
    return {"actor_net": tree, "mean_net": {"kernel": last["kernel"][:, :ACT], "bias": last["bias"][:ACT]}}


def kit_in_flax(agent, state, modules: dict[str, str]) -> dict:
    """{public module name: parameters} for the kit's state; 'target_' modules from its target parameters."""
    return {
        f"modules_{public}": to_flax(
            agent,
            kit.removeprefix("target_"),
            (state.target_params if kit.startswith("target_") else state.params)[kit.removeprefix("target_")],
        )
        for public, kit in modules.items()
    }


# --- Shared set-up and comparisons ------------------------------------------------------------------------------


def minibatches() -> list[Transitions]:
    keys = jax.random.split(jax.random.PRNGKey(42), UPDATES)
    batches = []
    for key in keys:
        k = jax.random.split(key, 6)
        batches.append(
            Transitions(
                observations=jax.random.normal(k[0], (BATCH, OBS)),
                actions=jax.random.uniform(k[1], (BATCH, ACT), minval=-1, maxval=1),
                rewards=jax.random.normal(k[2], (BATCH,)),
                masks=(jax.random.uniform(k[3], (BATCH,)) < 0.9).astype(jnp.float32),
                next_observations=jax.random.normal(k[4], (BATCH, OBS)),
                next_actions=jax.random.uniform(k[5], (BATCH, ACT), minval=-1, maxval=1),
            )
        )
    return batches


def make(name: str, **settings):
    agent = AGENTS[name](AGENTS[name].config_class(**{**TINY, **settings}), OBS, ACT)
    return agent, agent.init(0)


def kit_update_with(agent) -> Callable:
    """The kit's update with its draws replaced by the given ones: (state, batch, drawn) -> (state, metrics)."""

    def update(state, batch, drawn):
        agent.draws = lambda key, batch: drawn
        return agent.update(state, batch)

    return jax.jit(update)


def assert_losses_equal(kit: dict, public: dict, names: dict[str, str], step: int) -> float:
    """kit metric ~ public figure within LOSS_RTOL relative, for each pair of names; returns the largest difference."""
    worst = 0.0
    for kit_name, public_name in names.items():
        a, b = float(kit[kit_name]), float(public[public_name])
        relative = abs(a - b) / max(abs(b), 1e-12)
        assert relative <= LOSS_RTOL, f"update {step}: kit {kit_name} {a:.9g}, public {public_name} {b:.9g}"
        worst = max(worst, relative)
    return worst


def assert_params_equal(kit: dict, public: dict) -> float:
    """Every parameter within PARAM_ATOL; returns the largest absolute difference."""
    worst = 0.0
    for path, a in jax.tree_util.tree_leaves_with_path(kit):
        b = public
        for entry in path:
            b = b[entry.key]
        difference = float(jnp.abs(a - b).max())
        assert difference <= PARAM_ATOL, f"{jax.tree_util.keystr(path)}: max |kit - public| = {difference:.3g}"
        worst = max(worst, difference)
    return worst


# --- optax's Adam -------------------------------------------------------------------------------------------------


def test_adam_is_optax_adam_step_by_step():
    """Ten steps on random gradients of scales 1, 1e-9 and 1e-3: the kit's parameters and moments equal optax's
    to float32 rounding, leaf by leaf relative to its largest entry (XLA may order the same operations
    differently). Keras' Adam, epsilon added before bias correction, moves the 1e-9 leaf by about a tenth of
    optax's step at the first steps, far outside the tolerance."""
    key = jax.random.PRNGKey(0)
    params = {"a": [jax.random.normal(key, (7, 5)), jnp.zeros(5)], "b": [jnp.ones(3)]}
    tx = optax.adam(3e-4)
    opt, kit_state, kit_params, ref_params = tx.init(params), adam_init(params), params, params
    worst = 0.0
    for step in range(10):
        key, *keys = jax.random.split(key, 4)
        scales = (1.0, 1e-9, 1e-3)
        grads = {
            "a": [s * jax.random.normal(k, p.shape) for s, k, p in zip(scales, keys, params["a"], strict=False)],
            "b": [1e-3 * jax.random.normal(keys[2], (3,))],
        }
        kit_params, kit_state = adam_step(grads, kit_state, kit_params, 3e-4)
        updates, opt = tx.update(grads, opt, ref_params)
        ref_params = optax.apply_updates(ref_params, updates)
        for kit_leaf, ref_leaf in zip(
            jax.tree.leaves((kit_params, kit_state.mu, kit_state.nu)),
            jax.tree.leaves((ref_params, opt[0].mu, opt[0].nu)),
            strict=True,
        ):
            difference = float(jnp.abs(kit_leaf - ref_leaf).max() / jnp.abs(ref_leaf).max())
            worst = max(worst, difference)
            assert difference <= 1e-6, f"step {step}: max |kit - optax| / max |optax| = {difference:.3g}"
    assert int(kit_state.count) == int(opt[0].count) == 10
    print(f"Adam: max relative difference to optax over 10 steps {worst:.3g}")


# --- FQL (seohongpark/fql agents/fql.py) ---------------------------------------------------------------------------


def fql_total_loss(grad_params: dict, params: dict, batch: Transitions, drawn, c) -> tuple:
    """FQLAgent.total_loss: critic_loss then actor_loss; `params` (no gradient) is self.network.params."""
    next_actions = vector_field(params["modules_actor_onestep_flow"], batch.next_observations, drawn.next_noise)
    next_actions = jnp.clip(jnp.clip(next_actions, -1, 1), -1, 1)  # sample_actions clips, then critic_loss
    next_qs = value(params["modules_target_critic"], batch.next_observations, next_actions)
    next_q = next_qs.min(axis=0) if c.q_agg == "min" else next_qs.mean(axis=0)
    target_q = batch.rewards + c.discount * batch.masks * next_q
    q = value(grad_params["modules_critic"], batch.observations, batch.actions)
    critic_loss = jnp.square(q - target_q).mean()

    x_0, t = drawn.path.x0, drawn.path.t
    x_t = (1 - t) * x_0 + t * batch.actions
    pred = vector_field(grad_params["modules_actor_bc_flow"], batch.observations, x_t, t)
    bc_flow_loss = jnp.mean((pred - (batch.actions - x_0)) ** 2)
    target_flow_actions = euler(params["modules_actor_bc_flow"], batch.observations, drawn.noise, c.flow_steps)
    actor_actions = vector_field(grad_params["modules_actor_onestep_flow"], batch.observations, drawn.noise)
    distill_loss = jnp.mean((actor_actions - target_flow_actions) ** 2)
    qs = value(params["modules_critic"], batch.observations, jnp.clip(actor_actions, -1, 1))
    q_policy = jnp.mean(qs, axis=0)
    q_loss = -q_policy.mean()
    if c.normalize_q_loss:
        q_loss = jax.lax.stop_gradient(1 / jnp.abs(q_policy).mean()) * q_loss
    actor_loss = bc_flow_loss + c.alpha * distill_loss + q_loss
    info = {"critic_loss": critic_loss, "bc_flow_loss": bc_flow_loss, "distill_loss": distill_loss, "q_loss": q_loss}
    return critic_loss + actor_loss, info


def fbrac_total_loss(grad_params: dict, params: dict, batch: Transitions, drawn, c) -> tuple:
    """FBRACAgent.total_loss (value-flows): the flow's own Euler solve, differentiated, maximises the mean Q."""
    next_actions = euler(params["modules_actor_flow"], batch.next_observations, drawn.next_noise, c.flow_steps)
    next_qs = value(params["modules_target_critic"], batch.next_observations, jnp.clip(next_actions, -1, 1))
    next_q = next_qs.min(axis=0) if c.q_agg == "min" else next_qs.mean(axis=0)
    target_q = batch.rewards + c.discount * batch.masks * next_q
    q = value(grad_params["modules_critic"], batch.observations, batch.actions)
    critic_loss = jnp.square(q - target_q).mean()

    x_0, t = drawn.path.x0, drawn.path.t
    x_t = (1 - t) * x_0 + t * batch.actions
    pred = vector_field(grad_params["modules_actor_flow"], batch.observations, x_t, t)
    bc_flow_loss = jnp.mean((pred - (batch.actions - x_0)) ** 2)
    actor_actions = euler(grad_params["modules_actor_flow"], batch.observations, drawn.noise, c.flow_steps)
    q_policy = jnp.mean(value(params["modules_critic"], batch.observations, actor_actions), axis=0)
    q_loss = -q_policy.mean()
    if c.normalize_q_loss:
        q_loss = jax.lax.stop_gradient(1 / jnp.abs(q_policy).mean()) * q_loss
    actor_loss = c.alpha * bc_flow_loss + q_loss
    info = {"critic_loss": critic_loss, "bc_flow_loss": bc_flow_loss, "q_loss": q_loss}
    return critic_loss + actor_loss, info


def rebrac_total_loss(grad_params: dict, params: dict, batch: Transitions, drawn, c, full_update: bool) -> tuple:
    """ReBRACAgent.total_loss: the critic's loss, and the actor's on full updates only."""

    def actor_mode(p: dict, observations: jax.Array) -> jax.Array:  # tanh-squashed Gaussian's mode
        return jnp.tanh(dense(p["mean_net"], mlp(p["actor_net"], observations, activate_final=True)))

    next_actions = actor_mode(params["modules_target_actor"], batch.next_observations)
    noise = jnp.clip(drawn.target_noise * c.actor_noise, -c.actor_noise_clip, c.actor_noise_clip)
    next_actions = jnp.clip(next_actions + noise, -1, 1)
    next_q = value(params["modules_target_critic"], batch.next_observations, next_actions).min(axis=0)
    next_q = next_q - c.alpha_critic * jnp.square(next_actions - batch.next_actions).sum(axis=-1)
    target_q = batch.rewards + c.discount * batch.masks * next_q
    q = value(grad_params["modules_critic"], batch.observations, batch.actions)
    critic_loss = jnp.square(q - target_q).mean()
    info = {"critic_loss": critic_loss}
    if not full_update:
        return critic_loss, info

    actions = actor_mode(grad_params["modules_actor"], batch.observations)
    q_policy = jnp.min(value(params["modules_critic"], batch.observations, actions), axis=0)
    lam = jax.lax.stop_gradient(1 / jnp.abs(q_policy).mean())
    actor_loss = -(lam * q_policy).mean()
    bc_loss = (c.alpha_actor * jnp.square(actions - batch.actions).sum(axis=-1)).mean()
    info.update(q_loss=actor_loss, bc_loss=bc_loss)
    return critic_loss + actor_loss + bc_loss, info


def qflow_losses(grad_params: dict, params: dict, batch: Transitions, drawn, c) -> dict[str, jax.Array]:
    """QFlowAgent's critic_loss (outer TD loss, intermediate value's regression) and actor_loss ("grad" type),
    each on the kit's one path draw (the public code draws a path for each: docs/methods.md)."""
    agg = (lambda qs: qs.min(axis=0)) if c.q_agg == "min" else (lambda qs: qs.mean(axis=0))
    s = batch.observations
    next_actions = euler(params["modules_actor_bc_flow"], batch.next_observations, drawn.next_noise, c.flow_steps)
    next_q = agg(value(params["modules_target_critic"], batch.next_observations, next_actions))
    target_q_outer = 1.0 * batch.rewards + c.discount * batch.masks * next_q
    q_outer = value(grad_params["modules_critic"], s, batch.actions)
    outer_loss = jnp.mean((q_outer - target_q_outer) ** 2)

    x_0, t = drawn.path.x0, drawn.path.t
    x_t = (1.0 - t) * x_0 + t * batch.actions
    inner_q_t = agg(value(grad_params["modules_tc_critic"], s, x_t, t))
    x_curr, t_curr = x_t, t
    for _ in range(c.flow_steps):
        step_dt = jnp.clip(1.0 - t_curr, 0.0, 1.0 / c.flow_steps)
        x_curr = x_curr + vector_field(params["modules_actor_bc_flow"], s, x_curr, t_curr) * step_dt
        t_curr = t_curr + step_dt
    target_value = jax.lax.stop_gradient(agg(value(params["modules_target_critic"], s, jnp.clip(x_curr, -1, 1))))
    distillation_loss = jnp.mean((inner_q_t - target_value) ** 2)

    pred_vel = vector_field(grad_params["modules_actor_bc_flow"], s, x_t, t)
    grad_v = jax.grad(lambda actions: value(params["modules_tc_critic"], s, actions, t).mean(axis=0).sum())(x_t)
    v_target = (batch.actions - x_0) + 1.0 / (QFLOW_ALPHA + 1e-8) * jax.lax.stop_gradient(grad_v)
    actor_loss = jnp.mean((pred_vel - jax.lax.stop_gradient(v_target)) ** 2)
    return {"outer_loss": outer_loss, "distillation_loss": distillation_loss, "actor_loss": actor_loss}


def ifql_total_loss(grad_params: dict, params: dict, batch: Transitions, drawn, c) -> tuple:
    """IFQLAgent.total_loss: value_loss, critic_loss, then the flow BC actor_loss. The public critic loss sums its
    two members' squared errors; the kit logs their mean (as every other method's critic loss), half of it."""
    q = jnp.min(value(params["modules_target_critic"], batch.observations, batch.actions), axis=0)
    v = mlp(grad_params["modules_value"]["mlp"], batch.observations)[..., 0]
    weight = jnp.where(q - v >= 0, c.expectile, 1 - c.expectile)
    value_loss = (weight * (q - v) ** 2).mean()

    next_v = mlp(params["modules_value"]["mlp"], batch.next_observations)[..., 0]
    target = batch.rewards + c.discount * batch.masks * next_v
    q1, q2 = value(grad_params["modules_critic"], batch.observations, batch.actions)
    critic_loss = ((q1 - target) ** 2 + (q2 - target) ** 2).mean()

    x_0, t = drawn.x0, drawn.t
    x_t = (1 - t) * x_0 + t * batch.actions
    pred = vector_field(grad_params["modules_actor_flow"], batch.observations, x_t, t)
    actor_loss = jnp.mean((pred - (batch.actions - x_0)) ** 2)
    info = {"value_loss": value_loss, "critic_loss": critic_loss, "critic_loss_per_member": critic_loss / 2,
            "actor_loss": actor_loss}  # fmt: skip
    return value_loss + critic_loss + actor_loss, info


def ifql_action(params: dict, observation: jax.Array, noises: jax.Array, steps: int) -> jax.Array:
    """IFQLAgent.sample_actions for one observation: N flow samples, the one the critic's min values most."""
    observations = jnp.repeat(observation[None], noises.shape[0], axis=0)
    actions = euler(params["modules_actor_flow"], observations, noises, steps)
    return actions[jnp.argmax(value(params["modules_critic"], observations, actions).min(axis=0))]


def fourier_time_embed(t: jax.Array, embed_dim: int, max_freq: float = 256.0) -> jax.Array:
    """jaehyeokdoo2/qflow agents/qflow.py fourier_time_embed: fixed log-spaced frequencies, sines then cosines."""
    freqs = jnp.exp(jnp.linspace(0.0, jnp.log(max_freq), embed_dim // 2))
    args = t * freqs[None, :]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


QFLOW_ALPHA = 10.0
"""The public Q-Flow's default alpha; its guidance scale is 1 / (alpha + 1e-8)."""

CASES = {
    "fql": (
        {},
        {
            "critic": "critic",
            "target_critic": "target_critic",
            "actor_bc_flow": "flow",
            "actor_onestep_flow": "onestep",
        },
        fql_total_loss,
        {
            "critic_loss": "critic_loss",
            "bc_flow_loss": "bc_flow_loss",
            "distill_loss": "distill_loss",
            "q_loss": "q_loss",
        },
    ),
    "fbrac": (
        {},
        {"critic": "critic", "target_critic": "target_critic", "actor_flow": "flow"},
        fbrac_total_loss,
        {"critic_loss": "critic_loss", "bc_flow_loss": "bc_flow_loss", "q_loss": "q_loss"},
    ),
    "rebrac": (
        {"alpha_actor": 0.1, "alpha_critic": 0.01},
        {"critic": "critic", "target_critic": "target_critic", "actor": "actor", "target_actor": "target_actor"},
        rebrac_total_loss,
        {"critic_loss": "critic_loss", "q_loss": "q_loss", "bc_loss": "bc_loss"},
    ),
    "ifql": (
        {},
        {"critic": "critic", "target_critic": "target_critic", "actor_flow": "flow", "value": "value"},
        ifql_total_loss,
        {"value_loss": "value_loss", "critic_loss": "critic_loss_per_member", "bc_flow_loss": "actor_loss"},
    ),
}


@pytest.mark.parametrize("method", list(CASES))
def test_update_equals_the_public_codes(method):
    """UPDATES updates of the kit and of the transcription from the same weights, on the same minibatches and draws:
    every loss within 1e-5 relative at every update, every parameter (targets included) within 1e-4 at the end."""
    settings, modules, public_loss, loss_names = CASES[method]
    agent, state = make(method, **settings)
    c = agent.config
    draw, kit_update = agent.draws, kit_update_with(agent)
    targets = {f"modules_{m}": f"modules_target_{m}" for m in modules if f"target_{m}" in modules}
    params = kit_in_flax(agent, state, modules)
    tx = optax.adam(c.lr)
    opt_state = tx.init(params)
    worst_loss = 0.0
    for step, batch in enumerate(minibatches()):
        drawn = draw(jax.random.PRNGKey(100 + step), batch)
        state, metrics = kit_update(state, batch, drawn)
        # ReBRAC: public main.py's full_update = i % actor_freq == 0, i counting updates from 1.
        extra = {"full_update": (step + 1) % c.actor_freq == 0} if method == "rebrac" else {}
        loss_fn = functools.partial(public_loss, params=params, batch=batch, drawn=drawn, c=c, **extra)
        moved = targets if extra.get("full_update", True) else {}
        params, opt_state, info = public_update(loss_fn, params, opt_state, tx, c.tau, moved)
        compared = {k: v for k, v in loss_names.items() if v in info}
        worst_loss = max(worst_loss, assert_losses_equal(metrics, info, compared, step))
    worst_param = assert_params_equal(kit_in_flax(agent, state, modules), params)
    if method == "rebrac":
        initial, final = agent.init(0).params["actor"][-1], state.params["actor"][-1]
        np.testing.assert_array_equal(final[ACT:], initial[ACT:], err_msg="the unused log-std outputs stay put")
    print(f"{method}: max relative loss difference {worst_loss:.3g}, max parameter difference {worst_param:.3g}")


def test_qflow_losses_equal_the_public_code():
    """Q-Flow's three losses on the kit's weights before each of UPDATES updates, on the same minibatches and draws."""
    agent, state = make("qflow", time_features="raw", lam=1.0 / (QFLOW_ALPHA + 1e-8))
    modules = {"critic": "critic", "target_critic": "target_critic", "actor_bc_flow": "flow", "tc_critic": "value"}
    draw, kit_update = agent.draws, kit_update_with(agent)
    names = {"critic_loss": "outer_loss", "value_loss": "distillation_loss", "flow_loss": "actor_loss"}
    worst = 0.0
    for step, batch in enumerate(minibatches()):
        drawn = draw(jax.random.PRNGKey(100 + step), batch)
        params = kit_in_flax(agent, state, modules)
        public = qflow_losses(params, params, batch, drawn, agent.config)
        state, metrics = kit_update(state, batch, drawn)
        worst = max(worst, assert_losses_equal(metrics, public, names, step))
    print(f"qflow: max relative loss difference {worst:.3g}")


def test_ifql_acts_by_the_public_best_of_n():
    """The kit's IFQL policy on 4 observations, each with N = num_samples noises: the action the public
    sample_actions picks (Euler flow samples, clipped, argmax of the critic's min)."""
    agent, state = make("ifql", num_samples=8)
    params = kit_in_flax(agent, state, {"critic": "critic", "actor_flow": "flow"})
    key_obs, key_noise = jax.random.split(jax.random.PRNGKey(7))
    observations = jax.random.normal(key_obs, (4, OBS))
    noises = jax.random.normal(key_noise, (4, 8, ACT))
    kit = agent.policy(state.params, observations, noises)
    steps = agent.config.flow_steps
    public = jnp.stack([ifql_action(params, o, n, steps) for o, n in zip(observations, noises, strict=True)])
    np.testing.assert_allclose(kit, public, atol=1e-5, err_msg="IFQL's chosen actions differ from the public code's")


@pytest.mark.parametrize(("task", "width"), [("cube-single-play-singletask-task2-v0", 64), ("cube-double-play-v0", 16)])
def test_qflow_value_takes_the_public_time_embedding(task, width):
    """A resolved Q-Flow config on the task: V(s, x, t) of the kit against the public TimeConditionedCritic fed
    fourier_time_embed(t, time_embed_dim) on the same weights (time_embed_dim from qflow_config.py)."""
    config = make_run_config("qflow", task, 0, {"actor_hidden": (32, 32), "critic_hidden": (32, 32)})
    assert config.agent_config.time_embed_dim == width, (task, config.agent_config.time_embed_dim)
    agent = make_agent(config, OBS, ACT)
    state = agent.init(0)
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    s, x = jax.random.normal(keys[0], (BATCH, OBS)), jax.random.normal(keys[1], (BATCH, ACT))
    t = jax.random.uniform(keys[2], (BATCH, 1))
    kit = agent.apply("value", state.params, s, x, t)
    public = value(to_flax(agent, "value", state.params["value"]), s, x, fourier_time_embed(t, width))
    difference = float(jnp.abs(kit - public).max())
    assert difference <= 1e-4, f"{task}: max |kit V - public V| = {difference:.3g} (time_embed_dim {width})"
