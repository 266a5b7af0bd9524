"""How sensitive are FQL and FBRAC to alpha, the weight that keeps the policy near the data?

FQL's alpha weights the distillation loss; FBRAC's weights flow behaviour cloning against the Q term. A log
grid from 0.03 to 1000 spans the per-task values of the public code (10 to 1000) and the weak end where BPTT
becomes unstable.
"""

from flowkit import Study

ALPHAS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)

STUDY = Study(
    name="alpha",
    question="How sensitive are FQL and FBRAC to alpha? A log grid from 0.03 to 1000.",
    agents=("fql", "fbrac"),
    tasks=("eight-gaussians",),
    grid={"alpha": ALPHAS},
    seeds=(0, 1, 2),
    labels={"alpha": {a: f"α={a:g}" for a in ALPHAS}},
)
