"""The ODE solvers converge at their orders and honour per-sample start times."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

import flowkit  # noqa: F401  (selects the JAX backend)
from flowkit import solvers


def velocity(x, t):
    """dx/dt = 1 - 2 t x: non-autonomous, so every stage's time argument matters."""
    return 1 - 2 * t * x


def exact(x0, t):
    """x(t) = x0 e^{-t^2} + D(t), with D Dawson's integral e^{-t^2} int_0^t e^{s^2} ds."""
    return x0 * np.exp(-(t**2)) + scipy.special.dawsn(t)


@pytest.mark.parametrize(("solver", "order"), [("euler", 1), ("midpoint", 2), ("rk4", 4)])
@pytest.mark.slow
def test_global_error_shrinks_at_the_solvers_order(solver, order):
    x0 = 0.7
    target = exact(x0, 1.0)
    with jax.enable_x64(True), jax.disable_jit():  # op by op: compiling four unrolled scans took about 1 min
        errors = []
        for steps in (8, 16, 32, 64):
            x1 = solvers.integrate(velocity, jnp.full((1, 1), x0, jnp.float64), solver=solver, steps=steps)
            errors.append(abs(float(x1[0, 0]) - target))
    ratios = [errors[i] / errors[i + 1] for i in range(3)]
    observed = np.log2(ratios)
    message = f"{solver}: errors {errors}, ratios per doubling {ratios}, observed orders {observed}, expected {order}"
    assert np.all(np.abs(observed - order) < 0.25), message


def test_nfe_counts_velocity_evaluations():
    calls = []

    def counting(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return velocity(x, t)

    for solver, stages in solvers.SOLVERS.items():
        calls.clear()
        jax.block_until_ready(solvers.integrate(counting, jnp.ones((2, 1)), solver=solver, steps=5))
        jax.effects_barrier()
        assert len(calls) == solvers.nfe(solver, 5) == 5 * stages, (solver, len(calls))


def test_per_sample_start_times_share_the_unit_grid():
    steps = 8
    x = jnp.ones((3, 1))
    t0 = jnp.array([[0.0], [0.5], [1.0]])
    result = solvers.integrate(velocity, x, solver="rk4", steps=steps, t0=t0)
    from_zero = solvers.integrate(velocity, x[:1], solver="rk4", steps=steps)
    from_half = solvers.integrate(velocity, x[:1], solver="rk4", steps=steps // 2, t0=0.5)
    np.testing.assert_allclose(result[0], from_zero[0], rtol=1e-6)
    np.testing.assert_allclose(result[1], from_half[0], rtol=1e-6)
    np.testing.assert_array_equal(result[2], x[2])


def test_trajectory_returns_every_step():
    path = solvers.integrate(velocity, jnp.zeros((2, 3)), solver="midpoint", steps=4, trajectory=True)
    assert path.shape == (4, 2, 3)
    np.testing.assert_allclose(path[-1], solvers.integrate(velocity, jnp.zeros((2, 3)), solver="midpoint", steps=4))
