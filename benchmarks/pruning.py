"""What pruning saves on a bandit search study, and whether it changes the best cell found: the same search
(FQL on eight-gaussians, alpha log 0.01..1000 and K log 1..8, TPE with one sampler seed, 2 seeds per cell,
short runs) without a pruner and with one, each by a fresh worker process from an empty compilation cache.

    python -m flowkit.benchmarks.pruning [--trials 10] [--steps 1500] [--pruner median]

Prints, per run of the study: its wall time, the updates it trained over all cells and seeds, its complete and
pruned cells, and its best complete cell with its score (energy distance, lower is better).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from flowkit._backend import COMPILATION_CACHE_ENV
from flowkit.studies.runner import cell_of, load_optuna_study, pruned_of, run_study
from flowkit.studies.search import FloatRange, IntRange, Search
from flowkit.studies.study import Study


def pruning_study(trials: int, steps: int, pruner: str | None) -> Study:
    return Study(
        name="pruning",
        question="What does pruning save, and does it change the best cell?",
        agents=("fql",),
        tasks=("eight-gaussians",),
        seeds=(0, 1),
        fixed={"steps": steps, "log_every": 500, "eval_every": 500, "checkpoint_every": 500},
        search=Search(
            {"alpha": FloatRange(0.01, 1000.0, log=True), "flow_steps": IntRange(1, 8, log=True)},
            trials=trials,
            pruner=pruner,
        ),
    )


def _run(study: Study, folder: Path) -> None:
    run_study(study, folder, progress=False)


def measure(study: Study, folder: Path) -> dict[str, Any]:
    """Run the study by a fresh process with its own empty compilation cache; what it cost and found."""
    os.environ[COMPILATION_CACHE_ENV] = str(folder / "compilation-cache")
    process = multiprocessing.get_context("spawn").Process(target=_run, args=(study, folder))
    started = time.perf_counter()
    process.start()
    process.join()
    wall_s = time.perf_counter() - started
    trials = load_optuna_study(study, folder).get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    steps = study.fixed["steps"]
    trained = steps * len(study.seeds) * len(complete) + sum(pruned_of(t).trained_steps for t in pruned)
    best = min(complete, key=lambda t: t.value)
    return {
        "pruner": study.search.pruner,
        "wall_s": round(wall_s, 1),
        "updates": trained,
        "complete": len(complete),
        "pruned": len(pruned),
        "best": {"sample": cell_of(best)["sample"], **best.params, "score": round(best.value, 4)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10, help="the budget of sampled cells")
    parser.add_argument("--steps", type=int, default=1500, help="updates per run (a multiple of 500)")
    parser.add_argument("--pruner", default="median", help="the pruner of the second run")
    args = parser.parse_args()
    for pruner in (None, args.pruner):
        with tempfile.TemporaryDirectory(prefix="flowkit-pruning-") as folder:
            print(json.dumps(measure(pruning_study(args.trials, args.steps, pruner), Path(folder))), flush=True)


if __name__ == "__main__":
    main()
