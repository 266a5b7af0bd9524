"""The report's conclusions: a verdict per arm against the reference, per row and over all rows, with the statistics
that license it (analysis/conclusions.py), and where a success rate's spread comes from. A grid's only: a search's
sampled cells are no arms."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from flowkit.analysis.conclusions import Conclusion, compare, evaluation_noise, holm, unpaired_settings
from flowkit.reports import layout
from flowkit.reports.collect import CellResult
from flowkit.reports.parts import Block, ListPart, Paragraph, ReportData, Section, TablePart
from flowkit.reports.tables import Entry, Row, Table, arm_columns, arm_rows, groups, reference_column
from flowkit.studies.claim import Equivalence
from flowkit.studies.study import Cell, Study, cell_key
from flowkit.tasks import task_class

ALL_ROWS = "all rows"


@dataclass(frozen=True)
class Verdict:
    """One arm against the reference on one row (or over all rows): its conclusion and what keeps it unpaired."""

    row: str
    arm: str
    conclusion: Conclusion | None
    """None with fewer than two seeds on a side."""
    unpaired_by: tuple[str, ...]

    def line(self, reference: str) -> str:
        where = f"{self.arm} against {reference}" + (f" on {self.row}" if self.row else "")
        if self.conclusion is None:
            return f"{where}: no verdict (fewer than two seeds on a side)"
        return f"{where}: {self.conclusion.text()}"


def _margin(study: Study, task: str) -> float | None:
    return study.claim_for(task).margin_for(study.metric_for(task))


def _pairing(study: Study, cell: Cell, reference: Cell) -> tuple[str, ...]:
    seed = study.seeds[0]
    return tuple(unpaired_settings(study.run_config(cell, seed), study.run_config(reference, seed)))


def _row_verdicts(study: Study, results: Mapping[str, CellResult]) -> list[Verdict]:
    """Each arm against the reference in every row both have, Holm-corrected together."""
    reference = reference_column(study)
    found: list[tuple[str, str, tuple[str, ...], dict, dict, float | None]] = []
    for cells in groups(study.cells(), layout.rows(study)).values():
        by_column = {cell_key(layout.arm_of(study, cell)): cell for cell in cells}
        if reference not in by_column:
            continue
        base = by_column[reference]
        for column, cell in by_column.items():
            if column != reference:
                unpaired = _pairing(study, cell, base)
                arm, ref = results[cell_key(cell)].scores, results[cell_key(base)].scores
                row = layout.row_label(study, layout.row_of(study, cell))
                found.append((row, column, unpaired, arm, ref, _margin(study, cell["task"])))
    conclusions = holm([compare(arm, ref, not unpaired, margin) for _, _, unpaired, arm, ref, margin in found])
    return [
        Verdict(row, layout.arm_label(study, json.loads(column)), conclusion, unpaired)
        for (row, column, unpaired, *_), conclusion in zip(found, conclusions, strict=True)
    ]


def _row_means(study: Study, results: Mapping[str, CellResult], column: str, rows: set[str]) -> dict[int, float]:
    """Per seed, an arm's mean score over `rows` (the seeds every one of them has)."""
    scores = [
        results[cell_key(c)].scores
        for c in study.cells()
        if cell_key(layout.arm_of(study, c)) == column and cell_key(layout.row_of(study, c)) in rows
    ]
    seeds = set.intersection(*(set(s) for s in scores)) if scores else set()
    return {seed: float(np.mean([s[seed] for s in scores])) for seed in sorted(seeds)}


def _aggregate_verdicts(study: Study, results: Mapping[str, CellResult], rows: list[Verdict]) -> list[Verdict]:
    """Each arm against the reference on its per-seed mean over the rows both have; paired if every row is."""
    reference = reference_column(study)
    margins = {_margin(study, task) for task in study.tasks}
    margin = margins.pop() if len(margins) == 1 else None
    found = []
    for column in arm_columns(study):
        shared = arm_rows(study, column) & arm_rows(study, reference)
        if column == reference or not shared:
            continue
        label = layout.arm_label(study, json.loads(column))
        unpaired = tuple(sorted({name for v in rows if v.arm == label for name in v.unpaired_by}))
        arm, ref = _row_means(study, results, column, shared), _row_means(study, results, reference, shared)
        found.append((label, unpaired, compare(arm, ref, not unpaired, margin)))
    conclusions = holm([conclusion for *_, conclusion in found])
    return [Verdict(ALL_ROWS, label, c, unpaired) for (label, unpaired, _), c in zip(found, conclusions, strict=True)]


def verdicts(study: Study, results: Mapping[str, CellResult]) -> list[Verdict]:
    """Per row, then (with several rows) over all rows: the verdicts every output format shows."""
    rows = _row_verdicts(study, results)
    several = len(groups(study.cells(), layout.rows(study))) > 1
    return rows + (_aggregate_verdicts(study, results, rows) if several else [])


def verdict_lines(study: Study, results: Mapping[str, CellResult]) -> list[str]:
    """The verdicts as sentences (the Markdown, HTML and LaTeX outputs carry these same words)."""
    if study.search is not None:
        return []
    reference = layout.arm_label(study, json.loads(reference_column(study)))
    return [verdict.line(reference) for verdict in verdicts(study, results)]


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _verdict_row(verdict: Verdict) -> Row:
    c = verdict.conclusion
    pairing = "paired" if not verdict.unpaired_by else f"unpaired ({', '.join(verdict.unpaired_by)} differ)"
    label = f"{verdict.row}: {verdict.arm}" if verdict.row else verdict.arm
    if c is None:
        return Row(label, [Entry(text=pairing), *(Entry(text="n/a") for _ in range(5)), Entry(text="no verdict")])
    tost = "n/a" if c.tost_p is None else f"{c.tost_p:.3f} (±{c.margin:g})"
    texts = [
        pairing,
        f"{c.difference:+.3f} [{c.ci[0]:+.3f}, {c.ci[1]:+.3f}] (n={c.n})",
        tost,
        f"{c.p_holm:.3f}",
        _number(c.mde),
        "n/a" if c.seeds_needed is None else str(c.seeds_needed),
        c.text(),
    ]
    return Row(label, [Entry(text=text) for text in texts])


def claim_text(study: Study) -> str:
    """What the comparisons test and against which margin, saying where the margin comes from."""
    texts = []
    for metric, task in {study.metric_for(task): task for task in study.tasks}.items():
        claim, margin = study.claim_for(task), _margin(study, task)
        kind = "equivalence" if isinstance(claim, Equivalence) else "a difference"
        source = "declared by the study" if claim.margin is not None else f"the default for `{metric}`"
        within = f"; margin ±{margin:g} on `{metric}` ({source})" if margin is not None else "; no margin"
        texts.append(f"the study claims {kind}{within}")
    text = "; ".join(texts)
    return f"{text[0].upper()}{text[1:]}."


class Conclusions(Section):
    """A grid's arms against its reference: what the per-seed scores license."""

    def applies(self, report: ReportData) -> bool:
        return report.study.search is None and len(arm_columns(report.study)) > 1

    def build(self, report: ReportData) -> Block | None:
        study = report.study
        found = verdicts(study, report.results)
        if not found:
            return None
        reference = layout.arm_label(study, json.loads(reference_column(study)))
        header = [
            "pairing",
            f"difference from {reference} [95% CI]",
            "TOST p (margin)",
            "p, Holm",
            "MDE (80% power)",
            "seeds per arm to decide",
            "verdict",
        ]
        table = Table(header, [_verdict_row(v) for v in found])
        return Block(
            "Conclusions",
            [
                Paragraph(f"{claim_text(study)} {METHOD_TEXT}"),
                TablePart(table, "Row: arm"),
                ListPart([v.line(reference) for v in found]),
            ],
        )


METHOD_TEXT = (
    "Arms that differ only in the solver, K, the energy schedule, the probability path or real-valued coefficients "
    "(alpha, lambda, ...) "
    "share, per seed, their initial weights, minibatches, loss draws and evaluation seeds: their per-seed "
    "differences are tested (paired t-test, TOST by `ttost_paired`); other arms are tested unpaired (Welch, "
    "`ttost_ind`), and the table names the settings that unpair them. Verdicts, in this order: **equivalent** when "
    "the difference's 90% CI lies within the margin (TOST, 5%); **different** when the t-test rejects no difference "
    "after Holm's correction over the table's rows (5%); else **inconclusive**, with the seeds per arm that would "
    "give 80% power to detect the wider of the gaps from the difference to the margin and to 0. MDE: the smallest "
    "difference these seeds detect with 80% power (two-sided, 5%). Over all rows: each seed's mean over the rows "
    "both arms have."
)


def _noise_row(study: Study, result: CellResult) -> Row | None:
    config = study.run_config(result.cell, study.seeds[0])
    split = evaluation_noise(result.score_list, config.train.eval_episodes * study.last_evals)
    if split is None:
        return None
    episodes, seeds = split.narrowing()
    texts = [
        f"{split.observed**0.5:.3f}",
        f"{split.evaluation**0.5:.3f} ({split.episodes} episodes)",
        f"{split.seed**0.5:.3f}",
        f"{split.evaluation_share:.0%}",
        f"{episodes:.0%} / {seeds:.0%}",
        "episodes" if split.evaluation_share >= 0.5 else "seeds",
    ]
    return Row(layout.cell_label(study, result.cell), [Entry(text=text) for text in texts])


class EvaluationNoise(Section):
    """For success rates: how much of the spread over seeds is evaluation (binomial) noise."""

    def applies(self, report: ReportData) -> bool:
        study = report.study
        return study.search is None and all(study.metric_for(t) in task_class(t).fractions for t in study.tasks)

    def build(self, report: ReportData) -> Block | None:
        rows = [row for result in report.results.values() if (row := _noise_row(report.study, result))]
        if not rows:
            return None
        header = [
            "SD over seeds",
            "evaluation SD (binomial)",
            "seed-to-seed SD",
            "evaluation share of the variance",
            "CI narrower with 2x episodes / 2x seeds",
            "more of",
        ]
        text = (
            "A success rate from E episodes varies by p(1 - p) / E from evaluation alone; the seed-to-seed variance "
            "is the observed variance less that (floored at 0). Where evaluation noise is half the variance or more, "
            "more episodes per seed narrow the CI more cheaply than more seeds (no training); else only more seeds do."
        )
        return Block("Evaluation noise", [Paragraph(text), TablePart(Table(header, rows), "Cell")])
