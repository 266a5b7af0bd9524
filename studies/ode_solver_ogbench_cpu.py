"""The ODE-solver ablation of FQL (the FQL reviews) on OGBench at the CPU scale (flowkit.studies.cpu_scale).

Make the data first: `flowkit data generate cube-single-play-v0 --episodes 200`. Nine runs of 40k updates
cost 83 minutes of one core in updates (about 50 minutes with evaluation on 2 idle cores; 1 h 53 min measured
under a load of 4 to 8, docs/results/ode-solver-ogbench-cpu); studies/ode_solver_ogbench.py is the paper-sized
study.
"""

from flowkit import Study
from flowkit.studies.cpu_scale import CPU_SCALE_TASK, OGBENCH_CPU_SCALE

STUDY = Study(
    name="ode-solver-ogbench-cpu",
    question="Does a better ODE solver help FQL on cube-single task2? Euler (default), midpoint and RK4 at K = 10.",
    agents=("fql",),
    tasks=(CPU_SCALE_TASK,),
    grid={"solver": ("euler", "midpoint", "rk4")},
    seeds=(0, 1, 2),
    fixed=OGBENCH_CPU_SCALE,
    last_evals=3,
)
