"""Probability paths of flow matching: how a noise x0 ~ N(0, I) at t = 0 moves to a data action a at t = 1.

Every path here is x_t = alpha(t) a + sigma(t) x0, and flow matching regresses the velocity onto its time
derivative alpha'(t) a + sigma'(t) x0 (the conditional target). Sampling integrates the learnt velocity from
x0 at t = 0 whatever the path, so only the interpolant and the target depend on it (docs/methods.md):

- linear (rectified flow; Lipman et al. 2023, Liu et al. 2023): alpha = t, sigma = 1 - t; target a - x0.
- cosine (the trigonometric interpolant of Albergo and Vanden-Eijnden 2023): alpha = sin(pi t / 2),
  sigma = cos(pi t / 2); target (pi / 2) (cos(pi t / 2) a - sin(pi t / 2) x0).
- vp (the variance-preserving path of Lipman et al. 2023, Eq. 19, from Song et al. 2021's VP SDE, time
  reversed so that t = 1 is the data): alpha = exp(-T(1 - t) / 2), T(s) = beta_min s + (beta_max - beta_min)
  s^2 / 2, sigma = sqrt(1 - alpha^2), beta_min 0.1, beta_max 20. At t = 0, alpha = exp(-5.025) = 0.0066, so
  sampling from pure noise starts 0.0066 a away from the path (Lipman et al. do the same); near t = 1, sigma'
  grows as 1 / sqrt(1 - t), an integrable singularity that t ~ U[0, 1) never reaches.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PATHS = ("linear", "cosine", "vp")
VP_BETA_MIN, VP_BETA_MAX = 0.1, 20.0


def coefficients(path: str, t: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(alpha, sigma, alpha', sigma') at t: x_t = alpha a + sigma x0 and its time derivative's weights."""
    if path == "linear":
        return t, 1 - t, jnp.ones_like(t), -jnp.ones_like(t)
    if path == "cosine":
        angle = 0.5 * jnp.pi * t
        return jnp.sin(angle), jnp.cos(angle), 0.5 * jnp.pi * jnp.cos(angle), -0.5 * jnp.pi * jnp.sin(angle)
    if path == "vp":
        s = 1 - t
        integral = VP_BETA_MIN * s + 0.5 * (VP_BETA_MAX - VP_BETA_MIN) * s**2
        alpha = jnp.exp(-0.5 * integral)
        d_alpha = 0.5 * (VP_BETA_MIN + (VP_BETA_MAX - VP_BETA_MIN) * s) * alpha
        # 1 - alpha^2 by expm1: in float32 alpha rounds to 1 for 1 - t < 1e-6, and sigma' would divide by 0.
        sigma = jnp.sqrt(-jnp.expm1(-integral))
        return alpha, sigma, d_alpha, -alpha * d_alpha / sigma
    raise ValueError(f"path: unknown probability path {path!r}; allowed: {', '.join(PATHS)}")


def interpolant(path: str, x0: jax.Array, actions: jax.Array, t: jax.Array) -> jax.Array:
    """x_t = alpha(t) a + sigma(t) x0."""
    alpha, sigma, _, _ = coefficients(path, t)
    return alpha * actions + sigma * x0


def velocity_target(path: str, x0: jax.Array, actions: jax.Array, t: jax.Array) -> jax.Array:
    """d x_t / dt = alpha'(t) a + sigma'(t) x0, the conditional velocity flow matching regresses onto."""
    _, _, d_alpha, d_sigma = coefficients(path, t)
    return d_alpha * actions + d_sigma * x0
