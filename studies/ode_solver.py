"""Does a better ODE solver help? FQL's distillation teacher integrated by Euler, midpoint or RK4.

The FQL reviewers' question (the FQL reviews): the flow BC policy that the one-step policy distils from is solved with
Euler (the default), the midpoint rule or RK4 at the same number of steps; everything else stays at its default.
The arms differ only in the solver, so each seed's runs share their random numbers and are compared paired.
"""

from flowkit import Equivalence, Study

STUDY = Study(
    name="ode-solver",
    question="Does a better ODE solver help FQL? Euler (default), midpoint and RK4 at K = 10 flow steps.",
    agents=("fql",),
    tasks=("eight-gaussians",),
    grid={"solver": ("euler", "midpoint", "rk4")},
    seeds=(0, 1, 2),
    # "Robust to the solver" is a claim of equivalence: within 0.05 in-support reward (the bandits' default margin).
    claim=Equivalence(margin=0.05),
)
