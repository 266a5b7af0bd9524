"""Where a toy trial's time goes: one trial of the default study's shape (FQL on eight-gaussians, 3 x 64
networks, three seeds), 10k updates per seed, run by a fresh worker from an empty compilation cache in a
temporary folder.

    python -m flowkit.benchmarks.trial_overhead [--steps 10000]

Seed 0 pays the worker's start (the bandit's support radius, Keras' first builds) and the cold compile;
seeds 1 and 2 take the compiled chunk the worker kept, as every later run of the same program in a worker
does (a fresh worker would load it from the compilation cache). The time
is split as `flowkit study status` splits it: compile, train (compiled chunks), eval, and other.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from flowkit._backend import COMPILATION_CACHE_ENV
from flowkit.studies.runner import load_optuna_study, run_study, seed_records
from flowkit.studies.study import Study


def overhead_study(steps: int) -> Study:
    return Study(
        name="trial-overhead",
        question="How much of a toy trial is spent outside compiled training?",
        agents=("fql",),
        tasks=("eight-gaussians",),
        grid={"solver": ("euler",)},
        seeds=(0, 1, 2),
        fixed={"steps": steps},
    )


def shares(spent: dict[str, float]) -> dict[str, float]:
    total = sum(spent.values())
    figures = {"total_s": round(total, 2), **{f"{part}_s": round(seconds, 2) for part, seconds in spent.items()}}
    figures.update({f"{part}_share": round(seconds / total, 4) for part, seconds in spent.items()})
    figures["outside_training_share"] = round((total - spent["train"]) / total, 4)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10_000, help="updates per run (a multiple of 1000)")
    args = parser.parse_args()
    study = overhead_study(args.steps)
    with tempfile.TemporaryDirectory(prefix="flowkit-trial-overhead-") as folder:
        os.environ[COMPILATION_CACHE_ENV] = str(Path(folder) / "compilation-cache")
        run_study(study, Path(folder), progress=False)
        (trial,) = load_optuna_study(study, Path(folder)).get_trials()
    for seed, record in seed_records(trial).items():
        spent = {part: getattr(record.timing, f"{part}_s") for part in ("compile", "train", "eval", "other")}
        print(json.dumps({"run": f"seed {seed}", "steps": args.steps, **shares(spent)}))
    print(json.dumps({"run": "trial", "steps": args.steps, **shares(trial.user_attrs["time_s"])}))


if __name__ == "__main__":
    main()
