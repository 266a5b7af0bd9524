"""Offline-to-online fine-tuning (the FQL paper: FQL "in offline RL and offline-to-online RL"; the Q-Flow paper,
Fig. 6): FQL against Q-Flow on cube-single task2 at the CPU scale (flowkit.studies.cpu_scale), 40k offline
updates then 40k environment steps with one update each, as the public FQL main.py's `--online_steps`.

Paired seeds: both methods start from the same seeds, evaluation resets and online episode resets. ReBRAC is
left out: no source gives its coefficients on this task (docs/methods.md). Make the data first:
`flowkit data generate cube-single-play-v0 --episodes 200`. Not run here: about 25 minutes of one core per run
(docs/results/paper-scale.md has the GPU command at the public codes' scale).
"""

from flowkit import Study
from flowkit.studies.cpu_scale import CPU_SCALE_TASK, OGBENCH_CPU_SCALE

STUDY = Study(
    name="offline-to-online-ogbench-cpu",
    question="Does online fine-tuning lift FQL and Q-Flow alike on cube-single task2, from the same offline start?",
    agents=("fql", "qflow"),
    tasks=(CPU_SCALE_TASK,),
    seeds=(0, 1, 2),
    fixed={**OGBENCH_CPU_SCALE, "online_steps": 40_000},
    last_evals=3,
)
