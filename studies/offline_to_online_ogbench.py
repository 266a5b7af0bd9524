"""Offline-to-online fine-tuning at the public FQL code's scale (4 x 512 networks, 1M offline updates then 1M
online steps, evaluations every 100k over 50 episodes, 8 seeds): FQL against Q-Flow on cube-single task2.
A GPU study (docs/results/paper-scale.md); offline_to_online_ogbench_cpu.py is its CPU-scale version.
"""

from flowkit import Study
from flowkit.studies.cpu_scale import CPU_SCALE_TASK

STUDY = Study(
    name="offline-to-online-ogbench",
    question="Does online fine-tuning lift FQL and Q-Flow alike on cube-single task2, at the public codes' scale?",
    agents=("fql", "qflow"),
    tasks=(CPU_SCALE_TASK,),
    seeds=tuple(range(8)),
    fixed={"online_steps": 1_000_000},
    last_evals=3,
)
