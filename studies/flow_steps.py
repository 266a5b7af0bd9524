"""How many flow steps are enough? K from 1 to 32 for every flow method, with the cost of an update.

FQL's paper claims robustness to K "as long as it is not too small"; FlowQ's claims training cost constant in
K; FBRAC backpropagates through all K steps. The report shows score and ms per update against K.
"""

from flowkit import Study

STUDY = Study(
    name="flow-steps",
    question="How many flow steps are enough, and what does each cost? K in {1, 2, 4, 8, 16, 32}.",
    agents=("fql", "fbrac", "flowq", "qflow"),
    tasks=("eight-gaussians",),
    grid={"flow_steps": (1, 2, 4, 8, 16, 32)},
    seeds=(0, 1, 2),
    labels={"flow_steps": {k: f"K={k}" for k in (1, 2, 4, 8, 16, 32)}},
)
