"""Do BPTT's gradients explode as regularization weakens, while Q-Flow's stay bounded (Q-Flow, Fig. 12)?

FBRAC backpropagates Q through every step of the flow; its alpha weights behaviour cloning, so a small alpha
is weak regularization. Q-Flow's lambda scales its value guidance (its public code writes it as 1 / alpha), so
a large lambda is weak regularization. Each method sweeps its own coefficient (the other is None in its
cells) over the same range of strengths; every run records each loss term's gradient norm too.
"""

from flowkit import Study

ALPHAS = (10.0, 1.0, 0.1, 0.01)
LAMBDAS = (0.1, 1.0, 10.0, 100.0)

STUDY = Study(
    name="bptt-gradients",
    question="Do FBRAC's BPTT gradients grow as alpha weakens, while Q-Flow's stay bounded as lambda grows?",
    agents=("fbrac", "qflow"),
    tasks=("eight-gaussians",),
    grid={"alpha": ALPHAS, "lam": LAMBDAS},
    seeds=(0, 1, 2),
    fixed={"term_grad_norms": True},
    labels={
        "alpha": {a: f"α={a:g}" for a in ALPHAS},
        "lam": {v: f"λ={v:g}" for v in LAMBDAS},
    },
)
