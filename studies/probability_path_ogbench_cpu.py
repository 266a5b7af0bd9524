"""The probability-path ablation of FQL (the FQL reviews) on OGBench at the CPU scale (flowkit.studies.cpu_scale).

Make the data first: `flowkit data generate cube-single-play-v0 --episodes 200`. Nine runs of the CPU scale,
like studies/ode_solver_ogbench_cpu.py (about an hour on 2 idle cores); the path changes only flow matching's
interpolant and target, so each run costs what the linear path's does.
"""

from flowkit import Study
from flowkit.studies.cpu_scale import CPU_SCALE_TASK, OGBENCH_CPU_SCALE

STUDY = Study(
    name="probability-path-ogbench-cpu",
    question="Does FQL's probability path matter on cube-single task2? Linear (default), cosine and VP paths.",
    agents=("fql",),
    tasks=(CPU_SCALE_TASK,),
    grid={"path": ("linear", "cosine", "vp")},
    seeds=(0, 1, 2),
    fixed=OGBENCH_CPU_SCALE,
    last_evals=3,
)
