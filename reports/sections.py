"""The report's sections, registered in order in SECTIONS (its figures in figure_kinds.FIGURE_KINDS).

Each section decides from the study's declaration (its grid or search, methods, tasks and seeds) or from the
stored results whether it applies, and builds its content once: titles, prose, tables, figures and lists. The
Markdown and HTML templates only render that content, so the prose has one source. Prose is written in a
small Markdown: `code`, **bold** and \\* for a literal star. A search study's sampled cells are not arms of a
comparison: the sections about arms are a grid's only, and the others read the cells from the results.
"""

from __future__ import annotations

from flowkit.reports.comparisons import Against, Aggregate, EqualNFE, Overview, SampledCells
from flowkit.reports.conclusions import Conclusions, EvaluationNoise
from flowkit.reports.figure_kinds import FigureSection
from flowkit.reports.parts import Block, ReportData, Section
from flowkit.reports.run_facts import Cost, Failures, FirstCellSettings, GradientExplosions, Pruned
from flowkit.reports.setting_effects import ScheduleStrength, SettingImportance, Tradeoff
from flowkit.reports.value_bias import ValueBiasSection

SECTIONS: list[Section] = [
    Overview(),
    SampledCells(),
    Conclusions(),
    EvaluationNoise(),
    Aggregate(),
    EqualNFE(),
    ScheduleStrength(),
    Tradeoff(),
    SettingImportance(),
    FigureSection(),
    ValueBiasSection(),  # beside the figures' value consistency: values against returns
    Cost(),
    Against(),
    Failures(),
    Pruned(),
    GradientExplosions(),
    FirstCellSettings(),
]


def build_blocks(report: ReportData) -> list[Block]:
    """The content of every section that applies and has something to show, in SECTIONS' order."""
    blocks = (section.build(report) for section in SECTIONS if section.applies(report))
    return [block for block in blocks if block is not None]
