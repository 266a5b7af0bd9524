"""Do BPTT's gradients grow as regularization weakens on OGBench, while Q-Flow's stay bounded (the Q-Flow paper,
Fig. 12)? FBRAC's alpha and Q-Flow's lambda on cube-single task2 at the CPU scale (flowkit.studies.cpu_scale),
each loss term's gradient norm recorded.

FBRAC's alpha weights behaviour cloning (small alpha: weak regularization); Q-Flow's lambda scales its value
guidance (large lambda: weak regularization; the public code's cube-single value is 1/5). Make the data first:
`flowkit data generate cube-single-play-v0 --episodes 200`.
"""

from flowkit import Study
from flowkit.studies.cpu_scale import CPU_SCALE_TASK, OGBENCH_CPU_SCALE

ALPHAS = (100.0, 10.0, 1.0)
LAMBDAS = (0.2, 2.0, 20.0)

STUDY = Study(
    name="bptt-gradients-ogbench-cpu",
    question="Do FBRAC's BPTT gradients grow as alpha weakens on cube-single, while Q-Flow's stay bounded?",
    agents=("fbrac", "qflow"),
    tasks=(CPU_SCALE_TASK,),
    grid={"alpha": ALPHAS, "lam": LAMBDAS},
    seeds=(0, 1, 2),
    fixed={**OGBENCH_CPU_SCALE, "term_grad_norms": True},
    labels={"alpha": {a: f"α={a:g}" for a in ALPHAS}, "lam": {v: f"λ={v:g}" for v in LAMBDAS}},
    last_evals=3,
)
