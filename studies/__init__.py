"""Study files: one module per study, each defining STUDY; `flowkit study run NAME` finds them here.

A study's name is its module's name with dashes (studies/ode_solver.py declares "ode-solver"); a name that
is a Python keyword gets a trailing underscore (studies/lambda_.py declares "lambda").
"""

from __future__ import annotations

import importlib
import keyword
import pkgutil

from flowkit.config import ConfigError
from studies.study import Study

_NOT_STUDIES = {"study", "runner"}


def study_names() -> list[str]:
    return sorted(
        info.name.removesuffix("_").replace("_", "-")
        for info in pkgutil.iter_modules(__path__)
        if info.name not in _NOT_STUDIES and not info.name.startswith("_")
    )


def _module_name(name: str) -> str:
    module = name.replace("-", "_")
    return f"studies.{module}_" if keyword.iskeyword(module) else f"studies.{module}"


def load_study(name: str) -> Study:
    """Import the study file for `name`; a missing, malformed or invalid file raises ConfigError."""
    names = study_names()
    if name not in names:
        raise ConfigError(f"study: no study named {name!r}; declared studies: {', '.join(names) or 'none'}")
    module_name = _module_name(name)
    try:
        module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(f"study file {module_name.replace('.', '/')}.py failed to load: {error!r}") from error
    study = getattr(module, "STUDY", None)
    if not isinstance(study, Study):
        raise ConfigError(f"study file {module_name.replace('.', '/')}.py must define STUDY = Study(...)")
    if study.name != name:
        raise ConfigError(
            f"study file {module_name.replace('.', '/')}.py declares name {study.name!r}, expected {name!r}"
        )
    return study


__all__ = ["Study", "load_study", "study_names"]
