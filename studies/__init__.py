"""Study files: one module per study, each defining STUDY; `flowkit study run NAME` finds them here, and
`flowkit study run path/to/file.py` runs a study file kept elsewhere.

A study's name is its module's name with dashes (studies/ode_solver.py declares "ode-solver"); a name that
is a Python keyword gets a trailing underscore (studies/lambda_.py declares "lambda").
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import keyword
import pkgutil
import traceback
from pathlib import Path
from types import ModuleType

from flowkit.settings import ConfigError
from flowkit.studies.study import Study


def study_names() -> list[str]:
    """The studies this folder declares: its modules that assign STUDY at top level, found by reading their source
    (importing every module would import the agents and the training loop just to list names)."""
    folder = Path(__path__[0])
    return sorted(
        info.name.removesuffix("_").replace("_", "-")
        for info in pkgutil.iter_modules(__path__)
        if not info.ispkg and _assigns_study(folder / f"{info.name}.py")
    )


def _assigns_study(path: Path) -> bool:
    """Whether the module at `path` assigns the name STUDY at its top level."""
    statements = ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body
    targets = [t for s in statements if isinstance(s, ast.Assign) for t in s.targets]
    targets += [s.target for s in statements if isinstance(s, ast.AnnAssign)]
    return any(isinstance(target, ast.Name) and target.id == "STUDY" for target in targets)


def _module_name(name: str) -> str:
    module = name.replace("-", "_")
    return f"flowkit.studies.{module}_" if keyword.iskeyword(module) else f"flowkit.studies.{module}"


def load_study(name: str) -> Study:
    """The study declared by studies/NAME.py, or by the study file at a path ending in .py; a missing,
    malformed or invalid file raises ConfigError before anything is stored."""
    if name.endswith(".py"):
        return _load_file(Path(name))
    names = study_names()
    if name not in names:
        raise ConfigError(
            f"study: no study named {name!r}; declared studies: {', '.join(names) or 'none'} "
            "(or give the path of a study file ending in .py)"
        )
    module_name = _module_name(name)
    where = f"study file {module_name.replace('.', '/')}.py"
    try:
        module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as error:
        raise _load_failure(where, error) from error
    study = _declared(module, where)
    if study.name != name:
        raise ConfigError(f"{where} declares name {study.name!r}, expected {name!r}")
    return study


def _load_file(path: Path) -> Study:
    where = f"study file {path}"
    if not path.is_file():
        raise ConfigError(f"{where}: no such file")
    spec = importlib.util.spec_from_file_location(f"flowkit_study_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        raise
    except Exception as error:
        raise _load_failure(where, error) from error
    return dataclasses.replace(_declared(module, where), source=str(path))


def _load_failure(where: str, error: Exception) -> ConfigError:
    """A study file that does not run, in one line: the error, and the file, line number and line it points at."""
    if isinstance(error, SyntaxError):
        filename, lineno, line = error.filename, error.lineno, error.text or ""
    else:
        frame = traceback.extract_tb(error.__traceback__)[-1]
        filename, lineno, line = frame.filename, frame.lineno, frame.line or ""
    text = error.msg if isinstance(error, SyntaxError) else str(error)
    return ConfigError(f"{where} failed to load: {type(error).__name__} at {filename}:{lineno}: {text}: {line.strip()}")


def _declared(module: ModuleType, where: str) -> Study:
    study = getattr(module, "STUDY", None)
    if not isinstance(study, Study):
        raise ConfigError(f"{where} must define STUDY = Study(...)")
    return study


__all__ = ["Study", "load_study", "study_names"]
