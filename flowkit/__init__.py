"""flowkit: ablation and analysis studies of flow-matching policies in offline RL, on Keras 3 and JAX."""

from flowkit._backend import BackendError, select_jax_backend

select_jax_backend()

__all__ = ["BackendError"]
__version__ = "0.1.0"
