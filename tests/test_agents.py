"""Every method behind one interface: it updates and acts with every solver, and its gradients go where the
paper says (through every solver step for FBRAC, nowhere into fixed targets for FQL and Q-Flow)."""

import itertools
from pathlib import Path

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

from flowkit.agents import AGENTS, FLOW_AGENTS
from flowkit.agents.base import global_norm
from flowkit.agents.common import flow_actions
from flowkit.schedules import SCHEDULES, energy_schedule
from tests.helpers import tiny_agent, tiny_config

SMALL = {"actor_hidden": (16,), "batch_size": 16}


def grads_of(agent, state, batch, metric: str):
    def loss(params):
        return agent.loss(params, state.target_params, batch, jax.random.PRNGKey(3), state.step).metrics[metric]

    return jax.jit(jax.grad(loss))(state.params)


CASES = [(name, solver) for name in FLOW_AGENTS for solver in ("euler", "midpoint", "rk4")]
CASES += [(name, None) for name in AGENTS if name not in FLOW_AGENTS]


@pytest.mark.parametrize(("agent_name", "solver"), CASES)
@pytest.mark.slow
def test_every_method_and_solver_updates_and_acts(agent_name, solver, tmp_path: Path):
    settings = {**SMALL, **({"solver": solver, "flow_steps": 3} if solver else {})}
    if "critic_hidden" in tiny_config(agent_name).settings():
        settings["critic_hidden"] = (16,)
    agent, state, batch = tiny_agent(agent_name, **settings)
    state, metrics = jax.jit(agent.update)(state, batch)
    assert all(np.isfinite(float(value)) for value in metrics.values()), metrics
    noise = jax.random.normal(jax.random.PRNGKey(5), agent.noise_shape(batch.observations.shape[:-1]))
    actions = jax.jit(agent.policy)(state.params, batch.observations, noise)
    assert actions.shape == batch.actions.shape and float(jnp.abs(actions).max()) <= 1.0
    if solver in (None, "euler"):
        agent.save(state, tmp_path)
        loaded = keras.saving.load_model(tmp_path / "policy.keras")
        np.testing.assert_allclose(np.asarray(loaded(batch.observations, noise)), np.asarray(actions), atol=1e-6)


@pytest.mark.parametrize("agent_name", [name for name, cls in AGENTS.items() if cls.target_models])
@pytest.mark.slow
def test_update_moves_targets_by_polyak_averaging(agent_name):
    """The targets move toward the parameters from before the Adam step, as in the public codes: after two updates
    (ReBRAC moves its targets on the second), target = tau * params_1 + (1 - tau) * target_1."""
    agent, state, batch = tiny_agent(agent_name, tau=0.5)
    update = jax.jit(agent.update)
    first, _ = update(state, batch)
    second, _ = update(first, batch)
    for name in agent.target_models:
        moves = zip(first.params[name], first.target_params[name], second.target_params[name], strict=True)
        for params, target, moved in moves:
            np.testing.assert_allclose(moved, 0.5 * params + 0.5 * target, rtol=1e-5, atol=1e-6, err_msg=name)
    assert int(second.step) == 2


@pytest.mark.slow
def test_rebrac_moves_its_actor_and_targets_every_actor_freq_updates():
    """Updates 1, 3, ... (counted from 0) are full, as the public main.py's i % actor_freq == 0 with i from 1."""
    agent, state, batch = tiny_agent("rebrac", actor_freq=2)
    update = jax.jit(agent.update)
    first, _ = update(state, batch)
    second, _ = update(first, batch)
    key = jax.random.PRNGKey(0)
    assert float(agent.loss(state.params, state.target_params, batch, key, state.step).terms["q"]) == 0.0
    assert float(agent.loss(first.params, first.target_params, batch, key, first.step).terms["q"]) != 0.0
    for before, after in zip(state.target_params["critic"], first.target_params["critic"], strict=True):
        np.testing.assert_array_equal(before, after)
    targets = zip(first.target_params["critic"], second.target_params["critic"], strict=True)
    moved = global_norm([after - before for before, after in targets])
    assert float(moved) > 0.0, "the second update (a full one) moves the targets"


@pytest.mark.slow
def test_fbrac_backpropagates_through_the_first_solver_step():
    """Detaching the velocity of the first step (t = 0) keeps the forward pass but changes FBRAC's gradient."""
    agent, state, batch = tiny_agent("fbrac", flow_steps=4)
    full = grads_of(agent, state, batch, "q_loss")["flow"]
    original = agent.apply

    def first_step_detached(model, params, *inputs):
        output = original(model, params, *inputs)
        if model == "flow":
            output = jnp.where(inputs[2] == 0.0, jax.lax.stop_gradient(output), output)
        return output

    agent.apply = first_step_detached
    detached = grads_of(agent, state, batch, "q_loss")["flow"]
    difference = float(global_norm([a - b for a, b in zip(full, detached, strict=True)]))
    assert difference > 1e-3 * float(global_norm(full)), f"gradient norm {global_norm(full)}, change {difference}"


@pytest.mark.slow
def test_fql_teacher_critic_and_qflow_targets_receive_no_gradient():
    agent, state, batch = tiny_agent("fql", alpha=1.0)
    distill = grads_of(agent, state, batch, "distill_loss")
    assert float(global_norm(distill["flow"])) == 0.0 and float(global_norm(distill["onestep"])) > 0.0
    q_loss = grads_of(agent, state, batch, "q_loss")
    assert float(global_norm(q_loss["critic"])) == 0.0 and float(global_norm(q_loss["onestep"])) > 0.0

    agent, state, batch = tiny_agent("qflow")
    value = grads_of(agent, state, batch, "value_loss")
    assert float(global_norm(value["value"])) > 0.0
    assert float(global_norm(value["flow"])) == 0.0, "V's target Psi_{t->1} must not train the flow"
    assert float(global_norm(value["critic"])) == 0.0, "V's target is the target critic, with no gradient"
    flow = grads_of(agent, state, batch, "flow_loss")
    assert float(global_norm(flow["flow"])) > 0.0 and float(global_norm(flow["value"])) == 0.0


@pytest.mark.slow
def test_flowq_trains_without_sampling_the_policy():
    """The in-sample critic and the guided regression never call the solver: the update's cost is flat in K."""
    jaxprs = []
    for steps in (1, 16):
        agent, state, batch = tiny_agent("flowq", flow_steps=steps)
        jaxprs.append(len(str(jax.make_jaxpr(agent.update)(state, batch))))
    assert jaxprs[0] == jaxprs[1], f"FlowQ's update grew with K: {jaxprs}"


def test_fixed_energy_schedules_match_their_closed_forms():
    t = jnp.linspace(0.01, 0.99, 99)[:, None]
    closed_forms = {"t": t, "t2": t**2, "t2-over-1-t": t**2 / (1 - t)}
    for name, h in closed_forms.items():
        np.testing.assert_allclose(energy_schedule(name, t), (1 - t) / t * h, rtol=1e-5, err_msg=name)
    assert set(closed_forms) == set(SCHEDULES)


@pytest.mark.slow
def test_ifql_acts_with_the_candidate_its_critic_values_most():
    """IFQL's action is, per observation, the flow sample of highest min-Q among num_samples: recomputed here from
    the flow's solves and the critic one candidate at a time."""
    agent, state, batch = tiny_agent("ifql", **SMALL, critic_hidden=(16,), num_samples=8, flow_steps=3)
    noise = jax.random.normal(jax.random.PRNGKey(7), agent.noise_shape(batch.observations.shape[:-1]))
    actions = np.asarray(jax.jit(agent.policy)(state.params, batch.observations, noise))
    candidates = np.stack(
        [np.clip(flow_actions(agent, state.params, batch.observations, noise[:, k]), -1, 1) for k in range(8)], 1
    )
    values = np.stack(
        [agent.apply("critic", state.params, batch.observations, candidates[:, k]).min(0) for k in range(8)], 1
    )
    best = values.argmax(axis=1)
    np.testing.assert_allclose(actions, candidates[np.arange(len(best)), best], atol=1e-5)
    assert len(set(best.tolist())) > 1, f"the best sample's index varies with the observation: {best.tolist()}"
    chosen, first = values.max(axis=1).mean(), values[:, 0].mean()
    assert chosen > first, f"mean Q of the chosen action {chosen:.4f} exceeds that of one flow sample {first:.4f}"


@pytest.mark.slow
def test_ifql_flow_learns_by_behaviour_cloning_alone():
    """The critic and value losses give the flow no gradient and the flow loss gives the critic and value none:
    the policy improves only through acting's rejection step."""
    agent, state, batch = tiny_agent("ifql", **SMALL, critic_hidden=(16,))
    for metric, untouched in (("critic_loss", "flow"), ("value_loss", "flow"), ("bc_flow_loss", "critic")):
        norm = float(global_norm(grads_of(agent, state, batch, metric)[untouched]))
        assert norm == 0.0, f"{metric} moves {untouched}: gradient norm {norm}"
    value_grad = float(global_norm(grads_of(agent, state, batch, "bc_flow_loss")["value"]))
    assert value_grad == 0.0, f"bc_flow_loss moves the value network: {value_grad}"


def test_gaussian_bc_constant_std_is_state_independent_and_acts_with_the_mean(tmp_path: Path):
    """OGBench's GCBC variant (std="constant", squash="clip"): std 1 in every state, a squared-error likelihood,
    and the action is the clipped mean whatever the noise; the default variant's std varies with the state."""
    agent, state, batch = tiny_agent("gaussian-bc", **SMALL, std="constant", squash="clip")
    observations = jnp.linspace(-3.0, 3.0, 16)[:, None] * jnp.ones((1, agent.obs_dim))
    mean, log_std = agent.apply("actor", state.params, observations)
    assert float(jnp.abs(log_std).max()) == 0.0, f"log-std {np.asarray(log_std)} is not 0 in every state"
    assert float(jnp.std(mean, axis=0).min()) > 0.0, "the mean varies with the state (so the check above bites)"
    for seed in (1, 2):
        noise = jax.random.normal(jax.random.PRNGKey(seed), agent.noise_shape((16,)))
        actions = jax.jit(agent.policy)(state.params, observations, noise)
        np.testing.assert_allclose(actions, jnp.clip(mean, -1, 1), atol=1e-6, err_msg=f"noise seed {seed}")
    agent.save(state, tmp_path)
    loaded = keras.saving.load_model(tmp_path / "policy.keras")
    np.testing.assert_allclose(np.asarray(loaded(observations, noise)), np.asarray(actions), atol=1e-6)

    batch_mean = agent.apply("actor", state.params, batch.observations)[0]
    d = agent.action_dim
    expected = float(jnp.mean(0.5 * jnp.sum((batch.actions - batch_mean) ** 2, -1)) + 0.5 * d * np.log(2 * np.pi))
    nll = float(agent.loss(state.params, state.target_params, batch, jax.random.PRNGKey(0), state.step).terms["nll"])
    assert abs(nll - expected) < 1e-5 * abs(expected), f"nll {nll} vs squared error + constant {expected}"

    default, default_state, _ = tiny_agent("gaussian-bc", **SMALL)
    stds = jnp.exp(default.apply("actor", default_state.params, observations)[1])
    assert float(jnp.std(stds, axis=0).max()) > 1e-4, f"the default std varies with the state: {np.asarray(stds)}"


def mlp_weights(fan_in: int, hidden: tuple[int, ...], out: int, layer_norm: bool) -> int:
    """Kernels and biases of each Dense layer, plus LayerNorm's scale and offset after each hidden layer."""
    widths = (fan_in, *hidden, out)
    dense = sum(a * b + b for a, b in itertools.pairwise(widths))
    return dense + (2 * sum(hidden) if layer_norm else 0)


@pytest.mark.parametrize("agent_name", ["fql", "qflow", "gaussian-bc"])
def test_parameter_counts_match_the_layer_widths(agent_name):
    """Counted from the Keras models, checked against the widths: FQL's flow has t as one more input than its
    one-step policy; Q-Flow's value ensemble sees 16 Fourier features of t; critics are ensembles of two."""
    from flowkit.networks import parameter_counts

    widths = {"actor_hidden": (8, 6)} | ({} if agent_name == "gaussian-bc" else {"critic_hidden": (5,)})
    agent, _, _ = tiny_agent(agent_name, **widths)
    obs, act = agent.obs_dim, agent.action_dim
    critic = 2 * mlp_weights(obs + act, (5,), 1, True)
    expected = {
        "fql": {
            "critic": critic,
            "flow": mlp_weights(obs + act + 1, (8, 6), act, False),
            "onestep": mlp_weights(obs + act, (8, 6), act, False),
        },
        "qflow": {
            "critic": critic,
            "flow": mlp_weights(obs + act + 1, (8, 6), act, False),
            "value": 2 * mlp_weights(obs + act + 16, (5,), 1, True),
        },
        "gaussian-bc": {
            "actor": mlp_weights(obs, (8, 6), (2 if getattr(agent.config, "std", "") == "state" else 1) * act, False)
        },
    }[agent_name]
    counts = parameter_counts(agent.models)
    assert counts == expected, f"counted {counts}, from the widths {expected}"
