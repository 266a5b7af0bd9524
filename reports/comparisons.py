"""The sections that compare the arms: the main table (a grid's) or the sampled cells (a search's), each arm over
all tasks, the solvers at equal function evaluations, and the cells shared with another study (`--against`).
"""

from __future__ import annotations

from flowkit.reports import layout, tables
from flowkit.reports.parts import (
    Block,
    Paragraph,
    Part,
    ReportData,
    Section,
    TablePart,
)
from flowkit.studies.search import Choice, IntRange
from flowkit.studies.study import Study


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
        f"{layout.label(study, 'agent', study.agents[0])} on {study.tasks[0]} over {'; '.join(ranges)}; each cell "
        f"runs seeds {', '.join(map(str, study.seeds))}; {pruner}."
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


class Against(Section):
    """With `--against`: the cells both studies ran, side by side."""

    def applies(self, report: ReportData) -> bool:
        return report.against is not None

    def build(self, report: ReportData) -> Block | None:
        if report.against_table is None:
            return None
        text = "The cells both studies ran; p-values two-sided and Holm-corrected over these cells."
        return Block(f"Against `{report.against.name}`", [Paragraph(text), TablePart(report.against_table, "Cell")])
