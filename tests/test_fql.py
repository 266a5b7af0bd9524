"""FQL: the losses route gradients as the paper says, the policy learns, and saved policies act identically."""

from pathlib import Path

import jax
import jax.numpy as jnp
import keras
import numpy as np

from flowkit.agents import make_agent
from flowkit.agents.base import global_norm
from flowkit.config import make_run_config
from flowkit.datasets import load_task
from flowkit.training import train
from tests.helpers import TINY


def tiny_agent(**overrides):
    config = make_run_config("fql", "eight-gaussians", 0, {**TINY, **overrides})
    task = load_task(config.task)
    agent = make_agent(config, task.obs_dim, task.action_dim)
    return agent, agent.init(0), task.dataset.sample(jax.random.PRNGKey(0), config.agent_config.batch_size)


def test_distillation_teacher_and_q_loss_send_no_gradient_where_they_must_not():
    agent, state, batch = tiny_agent(alpha=1.0)
    key = jax.random.PRNGKey(3)

    def loss_of(term):
        return lambda params: agent.loss(params, state.target_params, batch, key)[1][term]

    distill = jax.jit(jax.grad(loss_of("distill_loss")))(state.params)
    q_loss = jax.jit(jax.grad(loss_of("q_loss")))(state.params)
    assert float(global_norm(distill["flow"])) == 0.0, "the flow teacher must get no gradient from distillation"
    assert float(global_norm(distill["onestep"])) > 0.0
    assert float(global_norm(q_loss["critic"])) == 0.0, "the critic must get no gradient from the Q loss"
    assert float(global_norm(q_loss["onestep"])) > 0.0


def test_update_moves_targets_by_polyak_averaging():
    agent, state, batch = tiny_agent(tau=0.5)
    new_state, metrics = jax.jit(agent.update)(state, batch)
    critic = zip(state.params["critic"], new_state.params["critic"], new_state.target_params["critic"], strict=True)
    for old, new, target in critic:
        np.testing.assert_allclose(target, 0.5 * new + 0.5 * old, rtol=1e-6, atol=1e-7)
    assert all(np.isfinite(float(value)) for value in metrics.values())
    assert int(new_state.step) == 1


def test_saved_policy_loads_with_keras_and_acts_identically(tmp_path: Path):
    agent, state, batch = tiny_agent()
    update = jax.jit(agent.update)
    for _ in range(3):
        state, _ = update(state, batch)
    agent.save(state, tmp_path)
    loaded = keras.saving.load_model(tmp_path / "policy.keras")
    observations = jnp.zeros((16, 1))
    noise = jax.random.normal(jax.random.PRNGKey(7), (16, 2))
    expected = agent.policy(state.params, observations, noise)
    np.testing.assert_array_equal(np.asarray(loaded(observations, noise)), np.asarray(expected))
    assert np.abs(np.asarray(expected)).max() <= 1.0


def test_fql_beats_flow_behaviour_cloning_on_eight_gaussians(tmp_path: Path):
    """Rewards are mode index / 7 with all modes equally likely, so cloning the data scores about 0.5."""
    settings = {"steps": 3000, "eval_every": 3000}
    fql = train(make_run_config("fql", "eight-gaussians", 0, settings), tmp_path / "fql", progress=False)["final"]
    bc = train(make_run_config("flow-bc", "eight-gaussians", 0, settings), tmp_path / "bc", progress=False)["final"]
    message = (
        f"FQL reward {fql['reward_mean']:.3f} (support {fql['support']:.2f}) vs flow BC reward "
        f"{bc['reward_mean']:.3f} (support {bc['support']:.2f})"
    )
    assert 0.45 < bc["reward_mean"] < 0.55, message
    assert fql["reward_mean"] > bc["reward_mean"] + 0.1, message
