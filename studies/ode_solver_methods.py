"""Does a better ODE solver help any flow method, at equal steps and at equal function evaluations?

Every flow method (FQL, FBRAC, FlowQ, Q-Flow) with Euler, midpoint and RK4 at K = 2, 4 and 8 steps. The main
table compares the solvers at equal K; the report adds them side by side at equal NFE (Euler K = 8, midpoint
K = 4 and RK4 K = 2 all cost 8 velocity evaluations per solve) and the score against NFE.
"""

from flowkit import Study

STUDY = Study(
    name="ode-solver-methods",
    question="Does a better ODE solver help flow policies? Euler, midpoint and RK4 at equal steps and equal NFE.",
    agents=("fql", "fbrac", "flowq", "qflow"),
    tasks=("eight-gaussians",),
    grid={"solver": ("euler", "midpoint", "rk4"), "flow_steps": (2, 4, 8)},
    compare=("solver",),
    seeds=(0, 1, 2),
)
