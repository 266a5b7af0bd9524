"""Do BPTT's gradients grow as regularization weakens on OGBench, while Q-Flow's stay bounded (the Q-Flow paper,
Fig. 12)? FBRAC's alpha and Q-Flow's lambda on cube-single task2 at the public code's scale (4 x 512, 1M
updates), each loss term's gradient norm recorded: for a GPU. bptt-gradients-ogbench-cpu is the same question
at the CPU scale. Make the data first: `flowkit data generate cube-single-play-v0`.
"""

from flowkit import Study

ALPHAS = (100.0, 10.0, 1.0)
LAMBDAS = (0.2, 2.0, 20.0)

STUDY = Study(
    name="bptt-gradients-ogbench",
    question="Do FBRAC's BPTT gradients grow as alpha weakens on cube-single, while Q-Flow's stay bounded?",
    agents=("fbrac", "qflow"),
    tasks=("cube-single-play-singletask-task2-v0",),
    grid={"alpha": ALPHAS, "lam": LAMBDAS},
    seeds=tuple(range(8)),
    fixed={"term_grad_norms": True},
    labels={"alpha": {a: f"α={a:g}" for a in ALPHAS}, "lam": {v: f"λ={v:g}" for v in LAMBDAS}},
    last_evals=3,
)
