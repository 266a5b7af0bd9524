"""Keras backend selection (flowkit's models and training loops are written for Keras on JAX only) and the
persistent compilation cache that lets a study pay each shape's compilation once."""

import os
import sys
from pathlib import Path


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


COMPILATION_CACHE_ENV = "FLOWKIT_COMPILATION_CACHE"
CACHE_MIN_COMPILE_S = 0.1
"""Programs that compile faster than this (Keras' and jnp's small eager operations) get no cache entry."""


def compilation_cache_dir() -> Path | None:
    """The folder of compiled programs kept between processes: $FLOWKIT_COMPILATION_CACHE, None if it is
    'off', else $XDG_CACHE_HOME/flowkit/jax (~/.cache/flowkit/jax)."""
    setting = os.environ.get(COMPILATION_CACHE_ENV, "").strip()
    if setting.lower() == "off":
        return None
    if setting:
        return Path(setting).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flowkit" / "jax"


def use_compilation_cache() -> Path | None:
    """Point JAX's persistent compilation cache at compilation_cache_dir(), so that a program compiled
    before with the same shapes (the previous trial's training chunk) is loaded instead of compiled."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    folder = compilation_cache_dir()
    path = None if folder is None else str(folder)
    if jax.config.jax_compilation_cache_dir != path:
        jax.config.update("jax_compilation_cache_dir", path)
        compilation_cache.reset_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_S)
    return folder
