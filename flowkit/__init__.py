"""flowkit: ablation and analysis studies of flow-matching policies in offline RL, on Keras 3 and JAX.

A study file declares its study with ``from flowkit import Study`` (and a search study its space with
``from flowkit import Search, FloatRange, IntRange, Choice``, and what its comparisons test with
``from flowkit import Equivalence, Difference``); ``flowkit.results(NAME)`` returns a study's results as a tidy
pandas DataFrame; ``flowkit.load_method("module:Class")`` puts an outside method in a study.
"""

from typing import Any

from flowkit._backend import BackendError, select_jax_backend

select_jax_backend()

__all__ = [
    "BackendError",
    "Choice",
    "Difference",
    "Equivalence",
    "FloatRange",
    "IntRange",
    "Search",
    "Study",
    "load_method",
    "results",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`flowkit.Study`, the search declarations and `flowkit.results` on first use: importing them loads the
    settings and tasks, which `import flowkit` need not."""
    if name == "Study":
        from flowkit.studies.study import Study

        return Study
    if name == "results":
        from flowkit.reports.export import results

        return results
    if name == "load_method":
        from flowkit.agents.plugins import load_method

        return load_method
    if name in ("Search", "FloatRange", "IntRange", "Choice"):
        from flowkit.studies import search

        return getattr(search, name)
    if name in ("Equivalence", "Difference"):
        from flowkit.studies import claim

        return getattr(claim, name)
    raise AttributeError(f"module 'flowkit' has no attribute {name!r}")
