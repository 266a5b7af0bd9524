"""The ODE-solver ablation of FQL on OGBench: the public FQL code's default task of each manipulation suite.

Paper-sized runs (4 x 512 networks, 1M updates, 50 evaluation episodes every 100k updates): about 28 hours
each on a 2-core CPU, so this study belongs on a GPU. Make its data first, as
docs/tasks.md#ogbench-data-made-here-loaded-through-ogbench-evaluated-in-its-environments says:
`flowkit data generate cube-single-play-v0 scene-play-v0 puzzle-3x3-play-v0 --workers N`.
A run's score is its mean success over the last three evaluations (800k, 900k and 1M updates), as OGBench
reports it.
"""

from flowkit import Study

STUDY = Study(
    name="ode-solver-ogbench",
    question="Does a better ODE solver help FQL on OGBench? Euler (default), midpoint and RK4 at K = 10 flow steps.",
    agents=("fql",),
    tasks=(
        "cube-single-play-singletask-task2-v0",
        "scene-play-singletask-task2-v0",
        "puzzle-3x3-play-singletask-task4-v0",
    ),
    grid={"solver": ("euler", "midpoint", "rk4")},
    seeds=tuple(range(8)),
    last_evals=3,
)
