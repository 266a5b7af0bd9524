"""flowkit: ablation and analysis studies of flow-matching policies in offline RL, on Keras 3 and JAX.

A study file declares its study with ``from flowkit import Study``.
"""

from typing import Any

from flowkit._backend import BackendError, select_jax_backend

select_jax_backend()

__all__ = ["BackendError", "Study"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`flowkit.Study` on first use: importing it loads the settings and tasks, which `import flowkit` need not."""
    if name == "Study":
        from flowkit.studies.study import Study

        return Study
    raise AttributeError(f"module 'flowkit' has no attribute {name!r}")
