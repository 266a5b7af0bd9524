"""Probability paths: each velocity target is its interpolant's time derivative, flow BC reaches the data under
each path, and the methods whose guidance assumes the linear path refuse the others."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowkit import paths
from flowkit.agents.flow_bc import FlowBC, FlowBCConfig
from flowkit.run_config import make_run_config
from flowkit.settings import ConfigError
from flowkit.tasks import Transitions


@pytest.mark.parametrize("path", paths.PATHS)
def test_each_target_is_the_time_derivative_of_its_interpolant(path):
    """Central differences of x_t in t (float64-free: h = 1e-3 keeps float32 rounding under 1e-3)."""
    key_noise, key_action = jax.random.split(jax.random.PRNGKey(0))
    x0, actions = jax.random.normal(key_noise, (64, 3)), jax.random.uniform(key_action, (64, 3), minval=-1, maxval=1)
    t = jnp.linspace(0.02, 0.98, 64)[:, None]
    h = 1e-3
    difference = (paths.interpolant(path, x0, actions, t + h) - paths.interpolant(path, x0, actions, t - h)) / (2 * h)
    target = paths.velocity_target(path, x0, actions, t)
    error = float(jnp.abs(difference - target).max())
    assert error < 2e-2, f"{path}: largest |finite difference - target| = {error:.2e}"


@pytest.mark.parametrize("path", paths.PATHS)
def test_the_paths_end_at_noise_and_data(path):
    """x_0 is (nearly, for vp: alpha(0) = 0.0066) the noise and x_1 the action."""
    x0, actions = jnp.full((1, 2), 2.0), jnp.full((1, 2), -0.5)
    start = paths.interpolant(path, x0, actions, jnp.zeros((1, 1)))
    end = paths.interpolant(path, x0, actions, jnp.ones((1, 1)))
    np.testing.assert_allclose(start, x0, atol=1e-2, err_msg=f"{path} at t = 0")
    np.testing.assert_allclose(end, actions, atol=1e-6, err_msg=f"{path} at t = 1")


@pytest.mark.parametrize("path", paths.PATHS)
def test_targets_stay_finite_up_to_the_last_float32_below_one(path):
    """t ~ U[0, 1) reaches 1 - 2^-24; there vp's sigma must not round to 0 (FQL diverged at update 85 when it did)."""
    t = jnp.array([[0.0], [1 - 2.0**-24]], jnp.float32)
    target = paths.velocity_target(path, jnp.ones((2, 1)), jnp.ones((2, 1)), t)
    assert bool(jnp.isfinite(target).all()), f"{path}: target {target.ravel().tolist()} at t = {t.ravel().tolist()}"


def mixture(size: int) -> Transitions:
    """A 1-D action from the mixture 0.5 N(-0.5, 0.05^2) + 0.5 N(0.5, 0.05^2), one constant observation."""
    signs = jnp.where(jnp.arange(size) % 2 == 0, -1.0, 1.0)[:, None]
    actions = 0.5 * signs + 0.05 * jax.random.normal(jax.random.PRNGKey(1), (size, 1))
    zeros = jnp.zeros((size, 1))
    return Transitions(zeros, actions, zeros[:, 0], zeros[:, 0], zeros, actions)


@pytest.mark.slow
@pytest.mark.parametrize("path", paths.PATHS)
def test_flow_bc_reaches_a_gaussian_mixture_under_each_path(path):
    """After 2000 updates of a (32, 32) flow and an Euler solve of 10 steps, 70% or more of the samples lie within
    0.2 of a mode (0.80 to 0.89 measured; the vp path is the slowest) and each mode holds 40% or more."""
    agent = FlowBC(FlowBCConfig(actor_hidden=(32, 32), batch_size=128, lr=3e-3, path=path), 1, 1)
    data = mixture(1024)

    def update(state, key):
        return agent.update(state, data.sample(key, 128))[0], None

    train = jax.jit(lambda state, key: jax.lax.scan(update, state, jax.random.split(key, 2000))[0])
    state = train(agent.init(0), jax.random.PRNGKey(2))
    samples = agent.act(state.params, jnp.zeros((2000, 1)), jax.random.PRNGKey(3))[:, 0]
    near = jnp.abs(jnp.abs(samples) - 0.5) < 0.2
    left, right = float((samples < 0).mean()), float((samples > 0).mean())
    assert float(near.mean()) > 0.7, f"{path}: {float(near.mean()):.2f} of the samples within 0.2 of a mode"
    assert min(left, right) > 0.4, f"{path}: modes hold {left:.2f} and {right:.2f} of the samples"


@pytest.mark.parametrize("agent", ["qflow", "flowq"])
def test_guided_methods_refuse_a_path_other_than_linear(agent):
    with pytest.raises(ConfigError, match=r"path: 'cosine' for .*derived for the linear path only.*allowed: linear"):
        make_run_config(agent, "moons", 0, {"path": "cosine"})
    assert make_run_config("fql", "moons", 0, {"path": "cosine"}).agent_config.path == "cosine"
