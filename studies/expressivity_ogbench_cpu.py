"""The expressivity ablation (the FQL reviews) on OGBench at the CPU scale (flowkit.studies.cpu_scale): goal-conditioned
behaviour cloning on cube-single with OGBench's Gaussian (constant std, no squashing), the full flow and the
flow distilled into one step, scored by success on the five evaluation goals (10 episodes per goal).

Make the data first: `flowkit data generate cube-single-play-v0 --episodes 200`;
studies/expressivity_ogbench.py is the paper-sized study.
"""

from flowkit import Study
from flowkit.studies.cpu_scale import OGBENCH_CPU_SCALE

BC_SCALE = {name: value for name, value in OGBENCH_CPU_SCALE.items() if name != "critic_hidden"}

STUDY = Study(
    name="expressivity-ogbench-cpu",
    question="How expressive is each policy class for goal-conditioned behaviour cloning on cube-single?",
    agents=("gaussian-bc", "flow-bc", "distill-bc"),
    tasks=("cube-single-play-v0",),
    grid={},
    seeds=(0, 1, 2),
    fixed={**BC_SCALE, "eval_episodes": 10, "std": "constant", "squash": "clip"},
    labels={"agent": {"gaussian-bc": "Gaussian", "flow-bc": "Full Flow", "distill-bc": "One-Step Distillation"}},
    last_evals=3,
)
