"""The sections about what a setting does: the importance of each varied setting, the strength of each energy
schedule, and where the one-step policy sits between the flow and the critic as alpha or lambda varies.
"""

from __future__ import annotations

from flowkit.analysis.importance import FANOVA_SEEDS, PED_ANOVA_QUANTILE
from flowkit.reports import importance, layout, plots, tables
from flowkit.reports.parts import (
    Block,
    FigurePart,
    Paragraph,
    Part,
    ReportData,
    Section,
    TablePart,
)
from flowkit.reports.tables import Entry, Row, Table
from flowkit.schedules import schedule_strength
from flowkit.studies.study import Study
from flowkit.tasks import task_class
from flowkit.tasks.toy import SCALE, ToyBandit, toy_points


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
        plots.slices(study, grouped, report.metric, report.out / slices_part.file)
        plots.contour(study, grouped, report.metric, report.out / contour_part.file)
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
                layout.label(study, "schedule", schedule),
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
        if report.out is not None and plots.tradeoff(
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
