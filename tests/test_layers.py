"""Imports flow one way: settings -> solvers/networks -> tasks -> agents -> training -> studies -> analysis ->
reports -> cli. A module may import its own layer or those below it, never one above."""

import ast
from pathlib import Path

import flowkit

LAYERS = [
    ("flowkit.settings", "flowkit.runs", "flowkit._backend", "flowkit.progress_bars"),
    ("flowkit.solvers", "flowkit.networks", "flowkit.schedules", "flowkit.paths"),
    ("flowkit.tasks",),
    ("flowkit.agents", "flowkit.run_config", "flowkit.display"),
    ("flowkit.training",),
    ("flowkit.studies",),
    ("flowkit.analysis",),
    ("flowkit.reports",),
    ("flowkit.cli", "flowkit.benchmarks"),
]


PACKAGE_NAMES = {
    "Study": "flowkit.studies.study",
    "BackendError": "flowkit._backend",
    **dict.fromkeys(("Search", "FloatRange", "IntRange", "Choice"), "flowkit.studies.search"),
    **dict.fromkeys(("Equivalence", "Difference"), "flowkit.studies.claim"),
}
"""Names `flowkit` itself exports, by the module that defines them."""


def layer_of(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def modules() -> dict[str, Path]:
    """Every module of the installed package, by name (the repository's studies/, reports/, ... included)."""
    found = {}
    for package in ("flowkit", "flowkit.studies", "flowkit.analysis", "flowkit.reports", "flowkit.benchmarks"):
        root = Path(__import__(package, fromlist=["_"]).__file__).parent
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[0] in ("studies", "analysis", "reports", "benchmarks") and package == "flowkit":
                continue  # a wheel installs them inside flowkit/: counted under their own package
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def test_every_import_points_to_its_own_layer_or_one_below():
    wrong = []
    for name, path in modules().items():
        if name == "flowkit":
            continue  # the package's lazy `flowkit.Study` is the one name study files import
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = (
                    [node.module]
                    if node.module != "flowkit"
                    else [PACKAGE_NAMES.get(a.name, f"flowkit.{a.name}") for a in node.names]
                )
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("flowkit.") and layer_of(target) > layer_of(name):
                    wrong.append(f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})")
    assert not wrong, "\n".join(wrong)
    assert len(modules()) > 60, f"found {len(modules())} modules of {flowkit.__file__}"
