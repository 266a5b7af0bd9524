"""The report's figures: each kind of figure decides whether the study has it and draws it (matplotlib code in
reports/plots.py); FIGURE_KINDS lists them in order and the section FigureSection shows those that apply.
"""

from __future__ import annotations

from flowkit.reports import plots, tables
from flowkit.reports.comparisons import EqualNFE
from flowkit.reports.parts import (
    Block,
    FigurePart,
    ReportData,
    Section,
)
from flowkit.studies.study import Study
from flowkit.tasks import task_class
from flowkit.tasks.toy import ToyBandit


class FigureKind:
    """One kind of figure: whether the study has it, and drawing it (a figure per file) into the report."""

    def applies(self, report: ReportData) -> bool:
        return True

    def draw(self, report: ReportData) -> list[FigurePart]:
        raise NotImplementedError


class ScoreVsStep(FigureKind):
    """A line per arm in each row's panel: a grid's (a search's many sampled cells in one panel would not read;
    its slices show their final scores)."""

    def applies(self, report: ReportData) -> bool:
        return report.study.search is None

    def draw(self, report: ReportData) -> list[FigurePart]:
        part = FigurePart(
            "score_vs_step.png", f"{report.metric} against training step per arm: mean over seeds, band of one std."
        )
        plots.score_vs_step(report.study, report.results, report.metric, report.out / part.file)
        return [part]


def _numeric_sweeps(study: Study) -> list[str]:
    """Swept settings with more than two numeric values: a score against each is a curve."""
    return [
        dim
        for dim, values in study.grid.items()
        if len(values) > 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    ]


class ScoreAgainstSetting(FigureKind):
    """A grid's sweeps as curves; a search's settings are drawn by the importance section's slices."""

    def applies(self, report: ReportData) -> bool:
        return report.study.search is None and bool(_numeric_sweeps(report.study))

    def draw(self, report: ReportData) -> list[FigurePart]:
        parts = []
        for dim in _numeric_sweeps(report.study):
            part = FigurePart(
                f"score_vs_{dim}.png", f"Final {report.metric} against {dim}: mean over seeds, band of one std."
            )
            plots.score_against(report.study, report.results, report.metric, dim, report.out / part.file)
            parts.append(part)
        return parts


class ScoreVsNFE(FigureKind):
    def applies(self, report: ReportData) -> bool:
        return EqualNFE().applies(report)

    def draw(self, report: ReportData) -> list[FigurePart]:
        part = FigurePart("score_vs_nfe.png", f"Final {report.metric} against NFE per solver: equal-cost comparison.")
        plots.score_against(
            report.study, report.results, report.metric, "nfe", report.out / part.file, along=("flow_steps",),
            x_of=tables.nfe_of, x_label="velocity evaluations per solve (NFE)",
        )  # fmt: skip
        return [part]


class CostVsSteps(FigureKind):
    """Cost against K over the cells with results: a grid's swept K, a search's sampled K alike."""

    def applies(self, report: ReportData) -> bool:
        return tables.sweeps_flow_steps(report.study)

    def draw(self, report: ReportData) -> list[FigurePart]:
        if not report.cost_fits:
            return []
        part = FigurePart("cost_vs_flow_steps.png", "ms per update of every run against K, with OLS lines.")
        plots.cost_vs_steps(report.cost_fits, report.out / part.file)
        return [part]


class GradientNorms(FigureKind):
    """Every run records its networks' gradient norms; the figure shows the one its result names the policy, a
    line per arm: a grid's (a search's runs that exploded are listed in GradientExplosions)."""

    def applies(self, report: ReportData) -> bool:
        return report.study.search is None

    def draw(self, report: ReportData) -> list[FigurePart]:
        networks = plots.gradient_norms(report.study, report.results, report.out / "gradient_norms.png")
        caption = (
            f"Gradient norm of the policy network ({', '.join(networks)}) over training: mean over each logging "
            "interval, geometric mean over seeds."
        )
        return [FigurePart("gradient_norms.png", caption)]


class Consistency(FigureKind):
    """Flow methods with a value record its gap along the flow at every evaluation (stored with the trial); a line
    per arm, so a grid's."""

    def applies(self, report: ReportData) -> bool:
        return report.study.search is None and any(result.consistency for result in report.results.values())

    def draw(self, report: ReportData) -> list[FigurePart]:
        plots.consistency(report.study, report.results, report.out / "consistency.png")
        caption = (
            "Value gap along the policy's flow at the final evaluation: Q-Flow's V, else the critic's Q used "
            "mid-flow; the mean over seeds of each seed's mean over 256 states, 95% t-intervals over seeds."
        )
        return [FigurePart("consistency.png", caption)]


class Samples(FigureKind):
    """The 2D bandits save their policy's samples in the run folder: a panel per cell with results (a search's
    best first)."""

    def applies(self, report: ReportData) -> bool:
        return any(issubclass(task_class(task), ToyBandit) for task in report.study.tasks)

    def draw(self, report: ReportData) -> list[FigurePart]:
        if not plots.samples(report.study, report.results, report.out / "samples.png"):
            return []
        caption = (
            "The first seed's policy samples (red) over the data coloured by reward; each panel's support is the mean "
            "share of samples on the data's support over its seeds."
        )
        return [FigurePart("samples.png", caption)]


FIGURE_KINDS: list[FigureKind] = [
    ScoreVsStep(),
    ScoreAgainstSetting(),
    ScoreVsNFE(),
    CostVsSteps(),
    GradientNorms(),
    Consistency(),
    Samples(),
]


class FigureSection(Section):
    """Every figure in FIGURE_KINDS that applies, drawn as PNG into the report folder."""

    def build(self, report: ReportData) -> Block | None:
        parts = [part for figure in FIGURE_KINDS if figure.applies(report) for part in figure.draw(report)]
        return Block("Figures", list(parts)) if parts else None
