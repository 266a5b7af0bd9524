"""How sensitive are FlowQ and Q-Flow to lambda, the scale of their value guidance?

FlowQ's lambda is the energy scale of pi_beta exp(lambda Q); Q-Flow's scales the intermediate value's
gradient (its public code writes it as 1 / alpha: 0.2 to 5 across tasks). A log grid from 0.01 to 100.
"""

from flowkit import Study

LAMBDAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)

STUDY = Study(
    name="lambda",
    question="How sensitive are FlowQ and Q-Flow to lambda? A log grid from 0.01 to 100.",
    agents=("flowq", "qflow"),
    tasks=("eight-gaussians",),
    grid={"lam": LAMBDAS},
    seeds=(0, 1, 2),
    labels={"lam": {v: f"λ={v:g}" for v in LAMBDAS}},
)
