"""`flowkit report NAME`: a study's tables and figures as Markdown, a self-contained HTML page, a LaTeX table
(booktabs) and PNG figures, in one folder per study (runs/NAME/report by default).

Numbers come from the study's Optuna storage (scores, evaluation histories, consistency, timings and costs,
which the runner copied from the run folders' results) and from the run folders themselves (gradient norms
over training, the policies' samples); the report only summarises them.
"""

from __future__ import annotations

import base64
import datetime
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from flowkit.analysis.gradients import explosions, gradient_curve
from flowkit.reports import figures, tables
from flowkit.reports.collect import CellResult, collect
from flowkit.studies.runner import load_optuna_study, study_dir
from flowkit.studies.study import Study, cell_key

from flowkit.agents import AGENTS
from flowkit.settings import ConfigError

TEMPLATES = Path(__file__).parent / "templates"
OUTPUTS = ("report.md", "report.html", "table.tex")


@dataclass
class Figure:
    file: str
    caption: str


def load_results(study: Study, runs_dir: Path, storage_url: str | None) -> dict[str, CellResult]:
    optuna_study = load_optuna_study(study, runs_dir, storage_url)
    if optuna_study is None:
        raise ConfigError(f"study {study.name!r} has no stored results yet; run `flowkit study run {study.name}`")
    return collect(study, optuna_study, study_dir(runs_dir, study.name))


def draw_figures(study: Study, results: dict[str, CellResult], metric: str, out: Path, fits: dict) -> list[Figure]:
    drawn = [Figure("score_vs_step.png", f"{metric} against training step per arm: mean over seeds, band of one std.")]
    figures.score_vs_step(study, results, metric, out / drawn[0].file)
    for dim, values in study.grid.items():
        if len(values) > 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            figures.score_against(study, results, metric, dim, out / f"score_vs_{dim}.png")
            drawn.append(
                Figure(f"score_vs_{dim}.png", f"Final {metric} against {dim}: mean over seeds, band of one std.")
            )
    if {"solver", "flow_steps"} <= set(study.grid):
        figures.score_against(
            study, results, metric, "nfe", out / "score_vs_nfe.png", along=("flow_steps",),
            x_of=tables.nfe_of, x_label="velocity evaluations per solve (NFE)",
        )  # fmt: skip
        drawn.append(Figure("score_vs_nfe.png", f"Final {metric} against NFE per solver: equal-cost comparison."))
    if fits:
        figures.cost_vs_steps(fits, out / "cost_vs_flow_steps.png")
        drawn.append(Figure("cost_vs_flow_steps.png", "ms per update of every run against K, with OLS lines."))
    networks = figures.gradient_norms(study, results, out / "gradient_norms.png")
    drawn.append(
        Figure(
            "gradient_norms.png",
            f"Gradient norm of the policy network ({', '.join(networks)}) over training: mean over each logging "
            "interval, geometric mean over seeds.",
        )
    )
    if figures.consistency(study, results, out / "consistency.png"):
        drawn.append(
            Figure(
                "consistency.png",
                "Value gap along the policy's flow at the final evaluation: Q-Flow's V, else the critic's Q used "
                "mid-flow; the mean over seeds of each seed's mean over 256 states, 95% t-intervals over seeds.",
            )
        )
    if figures.samples(study, results, out / "samples.png"):
        drawn.append(Figure("samples.png", "The first seed's policy samples (red) over the data coloured by reward."))
    return drawn


def flagged_gradients(study: Study, results: dict[str, CellResult]) -> list[str]:
    """Explosions of the policy network's gradient norm in any run (above 1e3, or 10x growth in 3 intervals)."""
    flags = []
    for cell in study.cells():
        network = AGENTS[cell["agent"]].policy_network
        for seed, run_dir in sorted(results[cell_key(cell)].run_dirs.items()):
            if not run_dir.exists():
                continue
            for step, reason in explosions(gradient_curve(run_dir, network))[:1]:
                flags.append(f"{study.cell_label(cell)}, seed {seed}: {network} at update {step}: {reason}")
    return flags


def _tex(text: Any) -> str:
    """Escape text for LaTeX (labels may hold _, &, %, Greek letters and superscripts)."""
    replacements = {
        "\\": r"\textbackslash{}", "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#", "$": r"\$",
        "{": r"\{", "}": r"\}", "²": r"$^2$", "α": r"$\alpha$", "λ": r"$\lambda$", "±": r"$\pm$",
        "†": r"$^\dagger$", "≤": r"$\leq$",
    }  # fmt: skip
    return "".join(replacements.get(char, char) for char in str(text))


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
    if against is not None:
        check_comparable(study, against)
    results = load_results(study, runs_dir, storage_url)
    other_results = load_results(against, runs_dir, against_storage) if against is not None else None
    out_dir = out_dir or study_dir(runs_dir, study.name) / "report"
    metric = " / ".join(sorted({study.metric_for(task) for task in study.tasks}))
    fits = tables.cost_fits(study, results)
    against_table = tables.against_table(study, results, against, other_results) if against is not None else None
    if against is not None and against_table is None:
        raise ConfigError(f"report --against {against.name!r}: the two studies share no cell with results")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        drawn = draw_figures(study, results, metric, staging, fits)
        context = {
            "study": study,
            "metric": metric,
            "main": tables.main_table(study, results),
            "reference": tables.reference_label(study),
            "aggregate": tables.aggregate_table(study, results),
            "nfe": tables.equal_nfe_table(study, results),
            "cost": tables.cost_table(study, results),
            "cost_fits": tables.cost_fit_table(fits),
            "against": against_table,
            "against_name": against.name if against is not None else None,
            "figures": drawn,
            "images": {f.file: base64.b64encode((staging / f.file).read_bytes()).decode() for f in drawn},
            "failures": {study.cell_label(r.cell): r.failure for r in results.values() if r.failure},
            "explosions": flagged_gradients(study, results),
            "settings": _settings(study),
            "created": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True, trim_blocks=True
        )
        environment.filters["tex"] = _tex
        for name in OUTPUTS:
            template = environment.get_template(f"{name}.j2")
            (staging / name).write_text(template.render(**context))
        replaced = out_dir.with_name(f".{out_dir.name}.replaced") if out_dir.exists() else None
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
            out_dir.rename(replaced)
        staging.rename(out_dir)
        if replaced is not None:
            shutil.rmtree(replaced)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir / "report.md"


def _settings(study: Study) -> dict[str, Any]:
    settings = study.run_config(study.cells()[0], study.seeds[0]).settings()
    return {name: ",".join(map(str, v)) if isinstance(v, list) else v for name, v in settings.items()}
