"""How many flow steps does FQL need on OGBench (the FQL paper: robust to K unless K is very small)? K in
{1, 2, 4, 8, 16} on cube-single task2 at the CPU scale (flowkit.studies.cpu_scale).

Make the data first: `flowkit data generate cube-single-play-v0 --episodes 200`.
"""

from flowkit import Study
from flowkit.studies.cpu_scale import CPU_SCALE_TASK, OGBENCH_CPU_SCALE

STEPS = (1, 2, 4, 8, 16)

STUDY = Study(
    name="flow-steps-ogbench-cpu",
    question="How many flow steps does FQL need on cube-single task2, and what does each cost? K in {1, ..., 16}.",
    agents=("fql",),
    tasks=(CPU_SCALE_TASK,),
    grid={"flow_steps": STEPS},
    seeds=(0, 1, 2),
    fixed=OGBENCH_CPU_SCALE,
    labels={"flow_steps": {k: f"K={k}" for k in STEPS}},
    last_evals=3,
)
