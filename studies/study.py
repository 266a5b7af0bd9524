"""What a study file declares: the arms to compare, on which tasks and seeds, and how a run is scored.

A study is a grid: every combination of method, task and swept settings is one cell, and one Optuna trial
runs a cell for all of the study's seeds. A search study (`search=Search(...)`, studies/search.py) instead
lets Optuna's sampler choose its cells from a space, with the grid's settings as choices beside it.
A swept setting a method lacks is None in that method's cells, so FBRAC's alpha and Q-Flow's lambda can be
swept in one study without running Q-Flow once per alpha.
Each cell's run settings go through flowkit.run_config, so a study with an unknown setting or a bad value is
refused when it is loaded, before anything runs or is stored.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowkit import runs
from flowkit.run_config import RunConfig, check_agent, check_task, make_run_config, setting_names
from flowkit.settings import ConfigError, Source
from flowkit.studies.claim import Claim, claim_for
from flowkit.studies.search import Choice, Dimension, FloatRange, IntRange, Search, ends
from flowkit.tasks import task_class

Cell = dict[str, Any]
"""One grid cell: {"agent": ..., "task": ..., **swept settings (None where the method lacks one)}; a search
study's sampled cell also holds the searched settings and "sample", its index in the budget."""

SAMPLE = "sample"
"""The key of a sampled cell's index (0 .. trials - 1): two samples of equal values are still two cells."""


@dataclass(frozen=True)
class Study:
    name: str
    question: str
    """The question the study answers, shown at the top of its report."""
    agents: tuple[str, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    """The swept settings and their values; the arm whose values are the runs' defaults is the reference."""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    """Settings shared by every run, on top of the method's and the task family's defaults."""
    labels: Mapping[str, Mapping[Any, str]] = field(default_factory=dict)
    """Display names of values in reports where the study means something particular, e.g.
    {"alpha": {0.1: "α=0.1"}}; methods and solvers have their own (flowkit.display)."""
    compare: tuple[str, ...] | None = None
    """The dimensions ("agent" or swept settings) whose values are the report's columns; the others make
    its rows. None compares the swept settings (or the methods, when nothing is swept)."""
    metric: str | None = None
    """Evaluation metric the score is taken from; None takes each task's own score metric."""
    last_evals: int = 1
    """A run's score is the mean of the metric over its last `last_evals` evaluations."""
    search: Search | None = None
    """Sample `search.trials` cells from a space instead of running every cell of the grid; the grid's settings,
    if any, are sampled as choices beside the space."""
    claim: Claim | None = None
    """What the comparisons with the reference arm are meant to show (`Equivalence(margin)` or
    `Difference()`); None: equivalence within the score's default margin (studies/claim.py). Not part of the
    definition: it changes no run, only the report's verdicts."""
    vectorize_seeds: bool = False
    """Train each cell's seeds as one vmapped program (results equal separate runs' up to float rounding;
    meant for a GPU, no gain on a CPU). Not part of the definition: it changes how results are computed."""
    source: str | None = field(default=None, compare=False)
    """The path of the study file it was loaded from, for a study kept outside studies/ (set by load_study)."""

    @property
    def command_name(self) -> str:
        """How commands name the study: `flowkit study run` and `flowkit report` take a study file's path."""
        return self.source or self.name

    def __post_init__(self) -> None:
        where = f"study {self.name!r}"
        try:
            runs.check_slug(self.name, "name")
            if not self.agents or not self.tasks or not self.seeds:
                raise ConfigError("agents, tasks and seeds must each name at least one")
            if len(set(self.seeds)) != len(self.seeds) or any(not isinstance(s, int) or s < 0 for s in self.seeds):
                raise ConfigError(f"seeds: expected distinct non-negative integers, got {self.seeds!r}")
            if not isinstance(self.vectorize_seeds, bool):
                raise ConfigError(f"vectorize_seeds: expected true or false, got {self.vectorize_seeds!r}")
            if self.last_evals < 1:
                raise ConfigError(f"last_evals: expected an integer >= 1, got {self.last_evals!r}")
            if self.claim is not None and not isinstance(self.claim, Claim):
                raise ConfigError(f"claim: expected Equivalence(margin=...) or Difference(), got {self.claim!r}")
            for agent in self.agents:
                check_agent(agent)
            for task in self.tasks:
                check_task(task)
                if self.metric_for(task) not in task_class(task).metrics:
                    raise ConfigError(
                        f"metric: task {task!r} reports no {self.metric!r}; "
                        f"allowed: {', '.join(sorted(task_class(task).metrics))}"
                    )
                self.claim_for(task).check(self.metric_for(task))
            if len({self.lower_is_better(task) for task in self.tasks}) > 1:
                raise ConfigError("metric: the tasks' score metrics disagree on whether lower or higher is better")
            for name, values in self.grid.items():
                if not values or len(set(map(json.dumps, values))) != len(values):
                    raise ConfigError(f"grid {name!r}: expected distinct values, got {values!r}")
            for name in (*self.grid, *self.fixed):
                if not any(name in setting_names(agent) for agent in self.agents):
                    raise ConfigError(f"setting {name!r} belongs to none of the study's methods {self.agents}")
            for name in self.compare or ():
                if name not in ("agent", *self.grid):
                    raise ConfigError(f"compare: {name!r} is neither 'agent' nor a swept setting {tuple(self.grid)}")
            for cell in self.cells():
                self.run_config(cell, self.seeds[0])
                cell_slug(cell)
            if self.search is not None:
                self._check_search()
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None

    def _check_search(self) -> None:
        """Refuse a search the study's method cannot run: one method on one task (a sampler optimises one
        score), searched settings the method lacks, ranges of the wrong type, and ends or choices it refuses."""
        self.search.check()
        if len(self.agents) > 1 or len(self.tasks) > 1:
            raise ConfigError(
                f"search: a search study samples one method on one task (its sampler optimises one score), got "
                f"agents {self.agents} and tasks {self.tasks}; declare a study per method and task"
            )
        known = setting_names(self.agents[0])
        base = self.cells()[0]
        for name, dimension in self.search.space.items():
            where = f"search space {name!r}"
            if name in self.grid or name in self.fixed or name in ("agent", "task", SAMPLE):
                raise ConfigError(f"{where}: also in the grid, fixed or a reserved name; search it in one place")
            if name not in known:
                raise ConfigError(f"{where}: not a setting of {self.agents[0]!r}; allowed: {', '.join(sorted(known))}")
            expected = {FloatRange: float, IntRange: int}.get(type(dimension))
            if expected is not None and known[name] is not expected:
                wanted = "IntRange" if known[name] is int else "Choice"
                raise ConfigError(f"{where}: the setting is not a {expected.__name__}; use {wanted}")
            for value in ends(dimension):
                try:
                    self.run_config({**base, name: storable(value)}, self.seeds[0])
                except ConfigError as error:
                    raise ConfigError(f"{where}: {value!r} is refused: {error}") from None

    def parameters(self) -> dict[str, Dimension]:
        """A search study's sampled settings: the grid's (as choices) and the space's, by name."""
        grid = {name: Choice(tuple(storable(v) for v in values)) for name, values in self.grid.items()}
        return {**grid, **self.search.space}

    def sampled_cell(self, values: Mapping[str, Any], sample: int) -> Cell:
        """The cell of a search study's `sample`-th trial, whose sampled settings are `values`."""
        sampled = {name: values[name] for name in self.parameters()}
        return {"agent": self.agents[0], "task": self.tasks[0], **sampled, SAMPLE: sample}

    def check_data(self) -> None:
        """Refuse to start while a task's dataset is missing or broken (the message says how to make it)."""
        for task in self.tasks:
            task_class(task).check_data(task)

    def metric_for(self, task: str) -> str:
        """The evaluation metric a run on `task` is scored by."""
        return self.metric or task_class(task).score_metric

    def claim_for(self, task: str) -> Claim:
        """What the comparisons on `task` test: the declared claim, else its score's default (studies/claim.py)."""
        return claim_for(self.claim, self.metric_for(task))

    def scores_fractions(self) -> bool:
        """Every task's score is a fraction with 1 the best possible (success rates): an optimality gap applies."""
        return all(self.metric_for(task) in task_class(task).fractions for task in self.tasks)

    def lower_is_better(self, task: str | None = None) -> bool:
        task = task or self.tasks[0]
        return self.metric_for(task) in task_class(task).lower_is_better

    def search_space(self) -> dict[str, list[Any]]:
        """Each trial parameter and its values, as Optuna records them."""
        space = {"agent": list(self.agents), "task": list(self.tasks)}
        for name, values in self.grid.items():
            lacking = any(name not in setting_names(agent) for agent in self.agents)
            space[name] = [storable(v) for v in values] + [None] * lacking
        return space

    def cells(self) -> list[Cell]:
        """Every (agent, task, swept values) combination, in declaration order; a swept setting the agent
        lacks is None. A search study runs sampled cells instead (the runner's `study_cells`)."""
        cells = []
        for agent in self.agents:
            known = setting_names(agent)
            axes = [[storable(v) for v in values] if name in known else [None] for name, values in self.grid.items()]
            for task, *values in itertools.product(self.tasks, *axes):
                cells.append({"agent": agent, "task": task, **dict(zip(self.grid, values, strict=True))})
        return cells

    def run_config(self, cell: Cell, seed: int) -> RunConfig:
        """The validated settings of one run: method < task family < study fixed < cell."""
        agent = cell["agent"]
        known = setting_names(agent)
        overrides = {k: v for k, v in {**self.fixed, **cell}.items() if k in known}
        sampled = tuple(self.search.space) if self.search else ()
        return make_run_config(agent, cell["task"], seed, overrides, origin=self.origin, sampled=sampled)

    @property
    def origin(self) -> Source:
        """The source of the values the study sets (its runs' config.json and reports cite it)."""
        return Source("study", self.command_name)

    def definition(self) -> dict[str, Any]:
        """What the stored results depend on; a stored study must match it to be continued."""
        return {
            "agents": list(self.agents),
            "tasks": list(self.tasks),
            "grid": {name: [storable(v) for v in values] for name, values in self.grid.items()},
            "seeds": list(self.seeds),
            "runs": {cell_key(cell): self.run_config(cell, 0).to_dict() for cell in self.cells()},
            "metric": self.metric,
            "last_evals": self.last_evals,
        } | ({} if self.search is None else {"search": self.search.definition()})


def storable(value: Any) -> Any:
    """Optuna stores str, int, float and bool parameters: a list of widths is stored as "64,64"."""
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value


def cell_key(cell: Mapping[str, Any]) -> str:
    """A canonical text for a cell, used to match trials to cells."""
    return json.dumps(dict(cell), sort_keys=True)


def cell_slug(cell: Mapping[str, Any]) -> str:
    """A folder name for a cell's runs (a '/', '@' or ':' in a value, as in TFDS task names and a user's dataset
    paths, becomes '-'); ConfigError if a value would make it anything but one folder."""
    slug = runs.slugify("__".join(f"{name}={value}" for name, value in cell.items() if value is not None))
    return runs.check_slug(slug, "cell folder", also="=,+")
