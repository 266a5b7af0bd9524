"""How sensitive is FQL to alpha and to its number of flow steps together? A search, not a grid.

Alpha (log 0.01 to 1000, the weak end where distillation barely holds the policy to the data, the strong end
of the public code's per-task values) and K (log 1 to 32) are sampled by TPE from one seed for 30 cells of 3
seeds each, on eight-gaussians at the bandits' defaults; the median pruner stops a cell whose score so far is
behind the completed cells' median at the same point, so the budget goes to the good region. Cells are scored by
the bandits' in-support reward (a sample off the data earns 0), so a weak alpha that lets the one-step policy
leave the data is not rewarded for it.
"""

from flowkit import FloatRange, IntRange, Search, Study

STUDY = Study(
    name="sensitivity",
    question="How sensitive is FQL to alpha and the number of flow steps together? TPE over both, 30 cells.",
    agents=("fql",),
    tasks=("eight-gaussians",),
    seeds=(0, 1, 2),
    search=Search(
        space={"alpha": FloatRange(0.01, 1000.0, log=True), "flow_steps": IntRange(1, 32, log=True)},
        trials=30,
        sampler="tpe",
        sampler_seed=0,
        pruner="median",
    ),
)
