"""Which ReBRAC alphas suit cube-single task2? A search, because no public source gives them for this task.

The FQL paper tuned ReBRAC's alpha_actor and alpha_critic per task but its values are public only for
humanoidmaze-medium; Guided Flow Policy's own tuning covers cube-double, scene and puzzle-4x4, not cube-single
(docs/methods.md). Their public defaults (0 and 0) turn ReBRAC's behaviour regularisation off, so the kit refuses
ReBRAC on a real task without them and points here. TPE samples alpha_actor on a log scale over the range the
sources span (0.001 to 1) and alpha_critic from the ReBRAC paper's grid (Tarasov et al., 2023: 0, 0.001, 0.01,
0.1, 0.5), 16 cells of 3 seeds, at the CPU scale of the other OGBench studies (flowkit.studies.cpu_scale). Copy
the file and change `tasks` to tune another task. Make the data first:
`flowkit data generate cube-single-play-v0 --episodes 200`.
"""

from flowkit import Choice, FloatRange, Search, Study
from flowkit.studies.cpu_scale import CPU_SCALE_TASK, OGBENCH_CPU_SCALE

STUDY = Study(
    name="rebrac-alphas-ogbench-cpu",
    question="Which ReBRAC alpha_actor and alpha_critic suit cube-single task2? TPE over both, 16 cells.",
    agents=("rebrac",),
    tasks=(CPU_SCALE_TASK,),
    seeds=(0, 1, 2),
    fixed=OGBENCH_CPU_SCALE,
    last_evals=3,
    search=Search(
        space={
            "alpha_actor": FloatRange(0.001, 1.0, log=True),
            "alpha_critic": Choice((0.0, 0.001, 0.01, 0.1, 0.5)),
        },
        trials=16,
        sampler="tpe",
        sampler_seed=0,
    ),
)
