"""The report's sections, registered in order in SECTIONS (and its figures in FIGURES).

Each section decides from the study's declaration (its grid or search, methods, tasks and seeds) or from the
stored results whether it applies, and builds its content once: titles, prose, tables, figures and lists. The
Markdown and HTML templates only render that content, so the prose has one source. Prose is written in a
small Markdown: `code`, **bold** and \\* for a literal star. A search study's sampled cells are not arms of a
comparison: the sections about arms are a grid's only, and the others read the cells from the results.
"""

from __future__ import annotations

from typing import Any

from flowkit.analysis.gradients import explosions
from flowkit.analysis.importance import FANOVA_SEEDS, PED_ANOVA_QUANTILE
from flowkit.reports import figures, importance, tables
from flowkit.reports.collect import CellResult
from flowkit.reports.conclusions import Conclusions, EvaluationNoise
from flowkit.reports.parts import (
    Block,
    FigurePart,
    ListPart,
    Paragraph,
    Part,
    ReportData,
    Section,
    TablePart,
)
from flowkit.reports.tables import Entry, Row, Table
from flowkit.reports.value_bias import ValueBiasSection
from flowkit.schedules import schedule_strength
from flowkit.settings import Source
from flowkit.studies.search import Choice, IntRange
from flowkit.studies.study import Study
from flowkit.tasks import task_class
from flowkit.tasks.toy import SCALE, ToyBandit, toy_points


def _score_text(report: ReportData) -> str:
    study = report.study
    evaluations = " at the final evaluation"
    if study.last_evals > 1:
        evaluations = f", averaged over the last {study.last_evals} evaluations"
    direction = " (lower is better)" if study.lower_is_better() else ""
    return f"Score: `{report.metric}`{evaluations} of each run{direction}."


class Overview(Section):
    """The question, how the runs are scored and tested, and the main table: arms against rows (a grid's only:
    a search's sampled cells are no arms, SampledCells lists them instead)."""

    def applies(self, report: ReportData) -> bool:
        return report.study.search is None

    def build(self, report: ReportData) -> Block:
        study = report.study
        described = (
            f"Methods: {', '.join(study.agents)}. Tasks: {', '.join(study.tasks)}. "
            f"Seeds: {', '.join(map(str, study.seeds))}. {_score_text(report)} "
            "Cells: mean ± sample standard deviation over seeds, n seeds; the best complete mean of each row in "
            "bold; \\* and † mark a difference from the reference arm, "
            f"{tables.reference_label(study)}, by Welch's t-test and by the Mann-Whitney U test (two-sided, "
            "Holm-corrected over the table, 5%; with three seeds Mann-Whitney cannot reach 5%). The IQM row pools "
            "rows and seeds with a stratified-bootstrap 95% interval."
        )
        main = tables.main_table(study, report.results)
        parts: list[Part] = [Paragraph(study.question), Paragraph(described), TablePart(main, "Task")]
        return Block(f"Study `{study.name}`", parts, level=1)


def search_text(study: Study) -> str:
    """What a search study samples, how, and with what budget and pruner."""
    ranges = []
    for name, dimension in study.parameters().items():
        if isinstance(dimension, Choice):
            ranges.append(f"`{name}` one of {', '.join(map(str, dimension.values))}")
        else:
            scale = "log scale" if dimension.log else "linear scale"
            kind = "integers" if isinstance(dimension, IntRange) else "numbers"
            ranges.append(f"`{name}` {kind} from {dimension.low:g} to {dimension.high:g} ({scale})")
    search = study.search
    pruner = f"the {search.pruner} pruner stops a cell whose score so far is behind" if search.pruner else "no pruner"
    return (
        f"A search: {search.sampler.upper()} (seed {search.sampler_seed}) samples {search.trials} cells of "
        f"{study.label('agent', study.agents[0])} on {study.tasks[0]} over {'; '.join(ranges)}; each cell runs seeds "
        f"{', '.join(map(str, study.seeds))}; {pruner}."
    )


class SampledCells(Section):
    """A search study's overview: the question, the search, and every sampled cell best first (a grid's cells are
    the main table's arms and rows instead)."""

    def applies(self, report: ReportData) -> bool:
        return report.study.search is not None

    def build(self, report: ReportData) -> Block:
        study = report.study
        results = report.results.values()
        counts = (
            f"{len(results)} cells sampled: {sum(tables.cell_state(study, r) == 'complete' for r in results)} "
            f"complete, {sum(bool(r.pruned) for r in results)} pruned, {sum(bool(r.failure) for r in results)} failed."
        )
        described = (
            f"{_score_text(report)} Cells best first: each one's sampled values, its mean ± sample standard deviation "
            "over seeds (n seeds; the best complete mean in bold), and whether it completed or its pruner stopped it "
            "(a pruned cell's mean is over the seeds it finished)."
        )
        parts: list[Part] = [
            Paragraph(study.question),
            Paragraph(f"{search_text(study)} {counts}"),
            Paragraph(described),
            TablePart(tables.sampled_table(study, report.results), "Sample"),
        ]
        return Block(f"Study `{study.name}`", parts, level=1)


class Aggregate(Section):
    """Each arm over all its rows and seeds (IQM, probability of improvement, optimality gap); a grid's only: a
    search runs one method on one task and its sampled cells are no arms."""

    def applies(self, report: ReportData) -> bool:
        return report.study.search is None and len(report.study.seeds) > 1

    def build(self, report: ReportData) -> Block | None:
        table = tables.aggregate_table(report.study, report.results)
        if table is None:
            return None
        text = (
            "Each arm over all its rows and seeds; the probability of improvement compares it with the reference "
            "on the rows both have."
        )
        return Block("Aggregate over tasks", [Paragraph(text), TablePart(table, "Arm")])


class EqualNFE(Section):
    """For a grid sweeping both the solver and K: the solvers side by side at equal velocity evaluations (a
    search's sampled cells seldom pair up at equal NFE)."""

    def applies(self, report: ReportData) -> bool:
        return report.study.search is None and {"solver", "flow_steps"} <= set(report.study.grid)

    def build(self, report: ReportData) -> Block | None:
        table = tables.equal_nfe_table(report.study, report.results)
        if table is None:
            return None
        text = (
            "The same runs with the solvers side by side where their steps K cost the same number of velocity "
            "evaluations per solve (NFE = K for Euler, 2K for midpoint, 4K for RK4)."
        )
        return Block("At equal function evaluations", [Paragraph(text), TablePart(table, "Task")])


class SettingImportance(Section):
    """For a study whose cells vary two or more settings (a grid's, or a search sampling two or more): how much
    each matters, the best cell, and the score against each setting and over the two that matter most."""

    def applies(self, report: ReportData) -> bool:
        return importance.varies_two_settings(report.study)

    def build(self, report: ReportData) -> Block | None:
        study = report.study
        grouped = importance.setting_groups(study, report.results)
        if not grouped:
            return None
        direction = "lowest" if study.lower_is_better() else "highest"
        text = (
            "Per method and task, each varied setting's share of the importance (each column sums to 1 over the "
            "settings), from Optuna's evaluators on the cells with results, each cell one trial valued by its mean "
            "score over seeds. fANOVA: the share of the score's variance over the settings that a random forest "
            "fitted to the cells attributes to the setting alone, as mean ± sample std over the forest's seeds "
            f"{', '.join(map(str, FANOVA_SEEDS))}. PED-ANOVA: how far the setting's values among the "
            f"{PED_ANOVA_QUANTILE:.0%} of cells with the {direction} scores (at least one) differ from its values "
            f"among all cells; deterministic, no seed. {_axes_text(study)}"
        )
        best_text = (
            f"The cell with the {direction} mean score among those with every seed: mean ± sample std over seeds "
            "and the stratified-bootstrap 95% interval of the mean."
        )
        slices_part = FigurePart(
            "importance_slices.png",
            f"Final {report.metric} against each varied setting, most important first: each cell at its mean over "
            "seeds with a bar of one std, its seeds as grey dots.",
        )
        contour_part = FigurePart(
            "importance_contour.png",
            f"Final {report.metric} over the two most important settings (fANOVA): each point the mean over the "
            "cells at that pair of values, linearly interpolated between them; brighter is better.",
        )
        figures.slices(study, grouped, report.metric, report.out / slices_part.file)
        figures.contour(study, grouped, report.metric, report.out / contour_part.file)
        parts: list[Part] = [
            Paragraph(text),
            TablePart(importance.importance_table(grouped), "Setting"),
            Paragraph(best_text),
            TablePart(importance.best_table(study, grouped), "Method / task"),
            slices_part,
            contour_part,
        ]
        return Block("Importance of the settings", parts)


def _axes_text(study: Study) -> str:
    if study.search is not None:
        return "Each setting lies on its searched range (on a log scale where declared so) or among its choices."
    return (
        "Numeric settings are ranges (on a log scale where positive and spanning a factor of 16 or more), the others "
        "choices of their declared values."
    )


class Figure:
    """One kind of figure: whether the study has it, and drawing it (a figure per file) into the report."""

    def applies(self, report: ReportData) -> bool:
        return True

    def draw(self, report: ReportData) -> list[FigurePart]:
        raise NotImplementedError


class ScoreVsStep(Figure):
    """A line per arm in each row's panel: a grid's (a search's many sampled cells in one panel would not read;
    its slices show their final scores)."""

    def applies(self, report: ReportData) -> bool:
        return report.study.search is None

    def draw(self, report: ReportData) -> list[FigurePart]:
        part = FigurePart(
            "score_vs_step.png", f"{report.metric} against training step per arm: mean over seeds, band of one std."
        )
        figures.score_vs_step(report.study, report.results, report.metric, report.out / part.file)
        return [part]


def _numeric_sweeps(study: Study) -> list[str]:
    """Swept settings with more than two numeric values: a score against each is a curve."""
    return [
        dim
        for dim, values in study.grid.items()
        if len(values) > 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    ]


class ScoreAgainstSetting(Figure):
    """A grid's sweeps as curves; a search's settings are drawn by the importance section's slices."""

    def applies(self, report: ReportData) -> bool:
        return report.study.search is None and bool(_numeric_sweeps(report.study))

    def draw(self, report: ReportData) -> list[FigurePart]:
        parts = []
        for dim in _numeric_sweeps(report.study):
            part = FigurePart(
                f"score_vs_{dim}.png", f"Final {report.metric} against {dim}: mean over seeds, band of one std."
            )
            figures.score_against(report.study, report.results, report.metric, dim, report.out / part.file)
            parts.append(part)
        return parts


class ScoreVsNFE(Figure):
    def applies(self, report: ReportData) -> bool:
        return EqualNFE().applies(report)

    def draw(self, report: ReportData) -> list[FigurePart]:
        part = FigurePart("score_vs_nfe.png", f"Final {report.metric} against NFE per solver: equal-cost comparison.")
        figures.score_against(
            report.study, report.results, report.metric, "nfe", report.out / part.file, along=("flow_steps",),
            x_of=tables.nfe_of, x_label="velocity evaluations per solve (NFE)",
        )  # fmt: skip
        return [part]


class CostVsSteps(Figure):
    """Cost against K over the cells with results: a grid's swept K, a search's sampled K alike."""

    def applies(self, report: ReportData) -> bool:
        return tables.sweeps_flow_steps(report.study)

    def draw(self, report: ReportData) -> list[FigurePart]:
        if not report.cost_fits:
            return []
        part = FigurePart("cost_vs_flow_steps.png", "ms per update of every run against K, with OLS lines.")
        figures.cost_vs_steps(report.cost_fits, report.out / part.file)
        return [part]


class GradientNorms(Figure):
    """Every run records its networks' gradient norms; the figure shows the one its result names the policy, a
    line per arm: a grid's (a search's runs that exploded are listed in GradientExplosions)."""

    def applies(self, report: ReportData) -> bool:
        return report.study.search is None

    def draw(self, report: ReportData) -> list[FigurePart]:
        networks = figures.gradient_norms(report.study, report.results, report.out / "gradient_norms.png")
        caption = (
            f"Gradient norm of the policy network ({', '.join(networks)}) over training: mean over each logging "
            "interval, geometric mean over seeds."
        )
        return [FigurePart("gradient_norms.png", caption)]


class Consistency(Figure):
    """Flow methods with a value record its gap along the flow at every evaluation (stored with the trial); a line
    per arm, so a grid's."""

    def applies(self, report: ReportData) -> bool:
        return report.study.search is None and any(result.consistency for result in report.results.values())

    def draw(self, report: ReportData) -> list[FigurePart]:
        figures.consistency(report.study, report.results, report.out / "consistency.png")
        caption = (
            "Value gap along the policy's flow at the final evaluation: Q-Flow's V, else the critic's Q used "
            "mid-flow; the mean over seeds of each seed's mean over 256 states, 95% t-intervals over seeds."
        )
        return [FigurePart("consistency.png", caption)]


class Samples(Figure):
    """The 2D bandits save their policy's samples in the run folder: a panel per cell with results (a search's
    best first)."""

    def applies(self, report: ReportData) -> bool:
        return any(issubclass(task_class(task), ToyBandit) for task in report.study.tasks)

    def draw(self, report: ReportData) -> list[FigurePart]:
        if not figures.samples(report.study, report.results, report.out / "samples.png"):
            return []
        caption = (
            "The first seed's policy samples (red) over the data coloured by reward; each panel's support is the mean "
            "share of samples on the data's support over its seeds."
        )
        return [FigurePart("samples.png", caption)]


FIGURES: list[Figure] = [
    ScoreVsStep(),
    ScoreAgainstSetting(),
    ScoreVsNFE(),
    CostVsSteps(),
    GradientNorms(),
    Consistency(),
    Samples(),
]


class ScheduleStrength(Section):
    """For a study sweeping FlowQ's energy schedule: how strong one lambda is under each schedule."""

    def applies(self, report: ReportData) -> bool:
        return "schedule" in report.study.grid

    def build(self, report: ReportData) -> Block:
        study = report.study
        spreads = {f"s = {s:g}": s for s in (1.0, 0.5, 0.2, 0.1)}
        spreads |= {f"{task} (s = {s:.2f})": s for task, s in action_spreads(study.tasks).items()}
        rows = [
            Row(
                study.label("schedule", schedule),
                [Entry(text=f"{schedule_strength(schedule, s):.2f}") for s in spreads.values()],
            )
            for schedule in study.grid["schedule"]
        ]
        text = (
            "End-point mean shift per unit λc relative to the exact tilt's λc s², for 1-D Gaussian data of standard "
            "deviation s and a linear Q = c a (derived in docs/methods.md): 1 would be the exact tilt, so one λ means "
            "a different strength under each schedule and each spread of the data. A bandit's s is the mean standard "
            "deviation of its actions over their dimensions (its data are not Gaussian: a guide to scale, not exact)."
        )
        return Block(
            "Strength of each energy schedule", [Paragraph(text), TablePart(Table(list(spreads), rows), "Schedule")]
        )


class Tradeoff(Section):
    """For a grid sweeping alpha or lambda: where the one-step policy sits between the flow it distils and the
    critic's maximum, per cell whose runs recorded it at evaluation (FQL)."""

    def applies(self, report: ReportData) -> bool:
        return report.study.search is None and bool(COEFFICIENTS & set(report.study.grid))

    def build(self, report: ReportData) -> Block | None:
        table = tables.tradeoff_table(report.study, report.results)
        if table is None:
            return None
        text = (
            "At the final evaluation, on 256 of the data's observations each with its own noise z: the distillation "
            "loss mean ||mu(s, z) - clip(Psi(s, z))||², the mean distance ||clip(mu(s, z)) - clip(Psi(s, z))|| of the "
            "one-step policy's action from the flow's, and the critic's mean Q of the one-step action minus that of "
            "the flow's; mean ± sample standard deviation over seeds. A small alpha lets the one-step policy leave "
            "the flow for a higher Q; a large one holds it to the flow."
        )
        parts: list[Part] = [Paragraph(text), TablePart(table, "Cell")]
        dim = next(d for d in report.study.grid if d in COEFFICIENTS)
        if report.out is not None and figures.tradeoff(
            report.study, report.results, report.metric, dim, report.out / "tradeoff.png"
        ):
            caption = f"Final {report.metric} (left) and the one-step policy's distance to the flow (right) by {dim}."
            parts.append(FigurePart("tradeoff.png", caption))
        return Block("The one-step policy's trade-off", parts)


COEFFICIENTS = {"alpha", "lam"}
"""The swept coefficients that trade the data against the critic."""


def action_spreads(tasks: tuple[str, ...]) -> dict[str, float]:
    """The bandits' action standard deviation, averaged over the action's dimensions (other tasks: none)."""
    return {
        task: float((toy_points(task)[0] / SCALE).std(axis=0).mean()) for task in tasks if task_class(task) is ToyBandit
    }


class Figures(Section):
    """Every figure in FIGURES that applies, drawn as PNG into the report folder."""

    def build(self, report: ReportData) -> Block | None:
        parts = [part for figure in FIGURES if figure.applies(report) for part in figure.draw(report)]
        return Block("Figures", list(parts)) if parts else None


class Cost(Section):
    """Every run is timed and costed: ms per update, GFLOP, memory; and, when K varies, cost against K (per cell
    with results: a grid's declared cells, a search's sampled ones)."""

    def build(self, report: ReportData) -> Block:
        text = (
            "Medians over logging intervals (compile excluded), GFLOP from XLA's cost analysis, peak memory from "
            "its memory analysis; NFE per solve of the configured solver."
        )
        parts: list[Part] = [Paragraph(text), TablePart(tables.cost_table(report.study, report.results), "Cell")]
        fit_table = tables.cost_fit_table(report.cost_fits)
        if fit_table is not None:
            fits_text = (
                'OLS of ms per update on K per method (every run a point); "flat in K": the slope\'s 95% interval '
                "within ±2% of the intercept per step."
            )
            parts += [Paragraph(fits_text), TablePart(fit_table, "Method")]
        return Block("Cost per update", parts)


class Against(Section):
    """With `--against`: the cells both studies ran, side by side."""

    def applies(self, report: ReportData) -> bool:
        return report.against is not None

    def build(self, report: ReportData) -> Block | None:
        if report.against_table is None:
            return None
        text = "The cells both studies ran; p-values two-sided and Holm-corrected over these cells."
        return Block(f"Against `{report.against.name}`", [Paragraph(text), TablePart(report.against_table, "Cell")])


class Failures(Section):
    def applies(self, report: ReportData) -> bool:
        return any(result.failure for result in report.results.values())

    def build(self, report: ReportData) -> Block:
        study = report.study
        items = [f"{study.cell_label(r.cell)}: {r.failure}" for r in report.results.values() if r.failure]
        return Block("Failed cells", [ListPart(items)])


class Pruned(Section):
    """A search study's cells its pruner stopped early: apart from the failed ones, with where they stopped."""

    def applies(self, report: ReportData) -> bool:
        return any(result.pruned for result in report.results.values())

    def build(self, report: ReportData) -> Block:
        return Block("Pruned cells", [ListPart(pruned_items(report.study, report.results))])


def pruned_items(study: Study, results: dict[str, CellResult]) -> list[str]:
    """One line per pruned cell: its sampled settings, and the seed, update and score so far where it stopped."""
    items = []
    for result in (r for r in results.values() if r.pruned):
        items.append(
            f"{study.cell_label(result.cell)}: stopped at update {result.pruned.step} of seed "
            f"{result.pruned.seed}, score so far {result.pruned.value:.4g}, "
            f"{len(result.scores)} of {len(study.seeds)} seeds finished"
        )
    return items


def gradient_flags(study: Study, results: dict[str, CellResult]) -> list[str]:
    """Explosions of the policy network's gradient norm in any run (above 1e3, or 10x growth in 3 intervals), over
    the cells with results (a grid's declared cells, a search's sampled ones)."""
    flags = []
    for result in results.values():
        cell = result.cell
        for seed, run_dir in sorted(result.run_dirs.items()):
            curve = figures.policy_gradient_curve(run_dir)
            if curve is None:
                continue
            network, norms = curve
            for step, reason in explosions(norms)[:1]:
                flags.append(f"{study.cell_label(cell)}, seed {seed}: {network} at update {step}: {reason}")
    return flags


class GradientExplosions(Section):
    """Every run records its gradient norms; runs where the policy's exploded are listed."""

    def applies(self, report: ReportData) -> bool:
        return any(result.run_dirs for result in report.results.values())

    def build(self, report: ReportData) -> Block | None:
        flags = gradient_flags(report.study, report.results)
        return Block("Gradient explosions flagged", [ListPart(flags)]) if flags else None


def first_cell_settings(study: Study, results: dict[str, CellResult]) -> dict[str, tuple[Any, Source]]:
    """The first cell's run settings and their sources: a grid's first declared cell, a search's first sampled
    one (its declared cell, with the method's defaults for the searched settings, before any is sampled)."""
    cells = [result.cell for result in results.values()] or study.cells()
    config = study.run_config(cells[0], study.seeds[0])
    return {
        name: (",".join(map(str, v)) if isinstance(v, list) else v, config.sources[name])
        for name, v in config.settings().items()
    }


class Settings(Section):
    """The first cell's full settings grouped by source (paper, other paper, kit, none, study, command line),
    and how the report was made."""

    def build(self, report: ReportData) -> Block:
        by_source: dict[Source, list[str]] = {}
        for name, (value, source) in first_cell_settings(report.study, report.results).items():
            by_source.setdefault(source, []).append(f"`{name}={value}`")
        items = [f"{source}: {' '.join(values)}" for source, values in by_source.items()]
        made = f"Generated {report.created} by `flowkit report {report.study.command_name}`."
        return Block("Settings of the first cell", [ListPart(items), Paragraph(made)])


SECTIONS: list[Section] = [
    Overview(),
    SampledCells(),
    Conclusions(),
    EvaluationNoise(),
    Aggregate(),
    EqualNFE(),
    ScheduleStrength(),
    Tradeoff(),
    ValueBiasSection(),
    SettingImportance(),
    Figures(),
    Cost(),
    Against(),
    Failures(),
    Pruned(),
    GradientExplosions(),
    Settings(),
]


def build_blocks(report: ReportData) -> list[Block]:
    """The content of every section that applies and has something to show, in SECTIONS' order."""
    blocks = (section.build(report) for section in SECTIONS if section.applies(report))
    return [block for block in blocks if block is not None]
