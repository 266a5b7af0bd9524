"""Keras backend selection: flowkit's models and training loops are written for Keras on JAX only."""

import os
import sys


class BackendError(RuntimeError):
    """Keras is (or is about to be) running on a backend other than JAX."""


def select_jax_backend() -> None:
    """Make Keras use JAX; must run before the first ``import keras`` to take effect."""
    requested = os.environ.get("KERAS_BACKEND", "")
    if requested not in ("", "jax"):
        raise BackendError(
            f"KERAS_BACKEND={requested!r} is set, but flowkit runs Keras on the JAX backend only: "
            "unset KERAS_BACKEND or set it to 'jax'."
        )
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != "jax":
        raise BackendError(
            f"Keras was imported before flowkit with the {keras.backend.backend()!r} backend, but flowkit "
            "needs 'jax': import flowkit before keras, or set KERAS_BACKEND=jax."
        )
    os.environ["KERAS_BACKEND"] = "jax"
