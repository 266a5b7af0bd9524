"""Methods from outside the kit: an installed package's entry points, or an import path named by the user.

A package adds methods under the entry-point group `flowkit.agents` of its pyproject (the entry point's name is
the method's name, its value the agent class: `half-fql = "my_methods:HalfFQL"`), found the way Gymnasium and
pytest find theirs; `load_method("my_methods:HalfFQL")` (or `--agent my_methods:HalfFQL`) registers one without
installing anything. Either way the class joins AGENTS, so runs, studies, help texts and reports treat it as a
kit method. A name that clashes with another method's, or a module that fails to import, is one ConfigError.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

from flowkit.agents import AGENT_CONFIGS, AGENTS
from flowkit.agents.base import Agent, AgentConfig
from flowkit.settings import ConfigError, Source

ENTRY_POINT_GROUP = "flowkit.agents"
ORIGINS: dict[str, str] = {}
"""Where each outside method came from (entry point or import path), by its name."""


@functools.cache
def load_entry_points() -> tuple[str, ...]:
    """Register every installed method plugin once per process; return their names."""
    names = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        where = f"method plugin {entry.name!r} (entry point {entry.value!r} in group {ENTRY_POINT_GROUP!r})"
        try:
            loaded = entry.load()
        except Exception as error:
            raise ConfigError(
                f"{where} failed to import: {type(error).__name__}: {error}; fix or uninstall it"
            ) from None
        name = getattr(loaded, "name", None)
        if name != entry.name:
            raise ConfigError(f"{where}: the entry point's name must be the method's name, got class name {name!r}")
        names.append(register(loaded, where))
    return tuple(names)


def load_method(path: str) -> str:
    """Register the agent class at `path` ("package.module:Class", or "file.py:Class" relative to the working
    folder) and return its method name, for `--agent` and study files."""
    module_name, sep, class_name = path.partition(":")
    where = f"method {path!r}"
    if not sep or not module_name or not class_name.isidentifier():
        raise ConfigError(f"{where}: expected an import path module:Class (or file.py:Class), e.g. my_methods:HalfFQL")
    try:
        module = (
            _import_file(Path(module_name)) if module_name.endswith(".py") else importlib.import_module(module_name)
        )
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(f"{where} failed to import: {type(error).__name__}: {error}") from None
    if not hasattr(module, class_name):
        raise ConfigError(f"{where}: module {module_name!r} defines no {class_name!r}")
    return register(getattr(module, class_name), where)


def _import_file(path: Path):
    """A method's module from its file, importable again (dataclasses and pickling look it up by name)."""
    if not path.is_file():
        raise ConfigError(f"method file {path}: no such file")
    name = f"flowkit_method_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path.resolve())
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def register(cls: object, where: str) -> str:
    """Add an agent class to AGENTS under its `name`, after checking it is one; return the name."""
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise ConfigError(f"{where}: {cls!r} is not a subclass of flowkit.agents.Agent (docs/methods.md)")
    config = getattr(cls, "config_class", None)
    name = getattr(cls, "name", None)
    if not (isinstance(config, type) and issubclass(config, AgentConfig) and hasattr(config, "display_name")):
        raise ConfigError(f"{where}: config_class must be an AgentConfig subclass with a display_name")
    if not isinstance(name, str) or not name or ":" in name or "/" in name:
        raise ConfigError(f"{where}: the class's name must be a method name without ':' or '/', got {name!r}")
    if AGENTS.get(name, cls) is not cls:
        taken = ORIGINS.get(name, "a kit method")
        raise ConfigError(f"{where}: the method name {name!r} is taken by {taken}; give the class another name")
    if "default_source" not in vars(config):
        config.default_source = Source("none", f"{config.__module__}.{config.__qualname__} cites no source")
    AGENTS[name], AGENT_CONFIGS[name] = cls, config
    ORIGINS.setdefault(name, where)
    return name
