"""`flowkit report NAME`: a study's tables and figures as Markdown, a self-contained HTML page, a LaTeX table
(booktabs) and PNG figures, in one folder per study (runs/NAME/report by default).

Numbers come from the study's Optuna storage (scores, evaluation histories, consistency, timings and costs,
which the runner copied from the run folders' results) and from the run folders themselves (gradient norms
over training, the policies' samples); the report only summarises them, and never loads a method. What it
shows is decided by the sections registered in flowkit.reports.sections; the templates only render them.
"""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path
from typing import Any

import jinja2

from flowkit.reports.collect import CellResult, collect
from flowkit.reports.conclusions import verdict_lines
from flowkit.reports.output import check_out_dir, publish, staging_folder
from flowkit.reports.parts import FigurePart, ListPart, Paragraph, ReportData, TablePart
from flowkit.reports.sections import build_blocks
from flowkit.reports.tables import main_table, reference_label, sampled_table
from flowkit.settings import ConfigError
from flowkit.studies.runner.storage import load_optuna_study, study_dir
from flowkit.studies.study import Study

TEMPLATES = Path(__file__).parent / "templates"
OUTPUTS = ("report.md", "report.html", "table.tex")


def load_results(study: Study, runs_dir: Path, storage_url: str | None) -> dict[str, CellResult]:
    optuna_study = load_optuna_study(study, runs_dir, storage_url)
    if optuna_study is None:
        hint = f"run `flowkit study run {study.command_name}`"
        raise ConfigError(f"study {study.name!r} has no stored results yet; {hint}")
    return collect(study, optuna_study, study_dir(runs_dir, study.name))


def _tex(text: Any) -> str:
    """Escape text for LaTeX (labels may hold _, &, %, Greek letters and superscripts)."""
    replacements = {
        "\\": r"\textbackslash{}", "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#", "$": r"\$",
        "{": r"\{", "}": r"\}", "²": r"$^2$", "α": r"$\alpha$", "λ": r"$\lambda$", "±": r"$\pm$",
        "†": r"$^\dagger$", "≤": r"$\leq$",
    }  # fmt: skip
    return "".join(replacements.get(char, char) for char in str(text))


def _html(text: str) -> str:
    """Prose (`code`, **bold**, \\* for a star) as HTML."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text).replace("\\*", "*")


def _environment() -> jinja2.Environment:
    """The templates' Jinja environment: escaping filters per format, and a test per kind of part."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True, trim_blocks=True
    )
    environment.filters["tex"] = _tex
    environment.filters["html"] = _html
    environment.tests["paragraph"] = lambda part: isinstance(part, Paragraph)
    environment.tests["table_part"] = lambda part: isinstance(part, TablePart)
    environment.tests["figure_part"] = lambda part: isinstance(part, FigurePart)
    environment.tests["list_part"] = lambda part: isinstance(part, ListPart)
    return environment


def check_comparable(study: Study, other: Study) -> None:
    """Two studies' scores can be set side by side only if they score a task's runs alike: the same metric
    over the same number of last evaluations (their settings may differ: that is the comparison)."""
    if study.last_evals != other.last_evals:
        raise ConfigError(
            f"report --against {other.name!r}: scores are means over the last {study.last_evals} evaluations "
            f"here and over the last {other.last_evals} there; they cannot be compared"
        )
    for task in sorted(set(study.tasks) & set(other.tasks)):
        if study.metric_for(task) != other.metric_for(task):
            raise ConfigError(
                f"report --against {other.name!r}: task {task} is scored by {study.metric_for(task)!r} here and "
                f"by {other.metric_for(task)!r} there; they cannot be compared"
            )


def build_report(
    study: Study,
    runs_dir: Path,
    storage_url: str | None = None,
    out_dir: Path | None = None,
    against: Study | None = None,
    against_storage: str | None = None,
) -> Path:
    """Write the study's report folder (Markdown, HTML, LaTeX, PNGs) atomically; return report.md's path."""
    out_dir = out_dir or study_dir(runs_dir, study.name) / "report"
    check_out_dir(out_dir, study.name)
    if against is not None:
        check_comparable(study, against)
    results = load_results(study, runs_dir, storage_url)
    other_results = load_results(against, runs_dir, against_storage) if against is not None else None
    report = ReportData(study, results, against, other_results)
    if against is not None and report.against_table is None:
        raise ConfigError(f"report --against {against.name!r}: the two studies share no cell with results")

    staging = staging_folder(out_dir)
    report.out = staging
    try:
        blocks = build_blocks(report)
        figures = [part for block in blocks for part in block.parts if isinstance(part, FigurePart)]
        context = {
            "study": study,
            "metric": report.metric,
            "main": main_table(study, results) if study.search is None else sampled_table(study, results),
            "reference": reference_label(study) if study.search is None else None,
            "verdicts": verdict_lines(study, results),
            "blocks": blocks,
            "images": {f.file: base64.b64encode((staging / f.file).read_bytes()).decode() for f in figures},
        }
        environment = _environment()
        for name in OUTPUTS:
            template = environment.get_template(f"{name}.j2")
            (staging / name).write_text(template.render(**context))
        publish(staging, out_dir, study.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir / "report.md"
