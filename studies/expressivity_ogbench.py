"""The expressivity ablation on OGBench (the FQL reviews): goal-conditioned behaviour cloning with a Gaussian, the
full flow and the flow distilled into one step, scored by success on OGBench's five evaluation goals.

The Gaussian is OGBench's goal-conditioned BC, the agent the FQL authors' expressivity table is built on: a
constant std (1 in every state), no tanh squashing, acting with the mean clipped to the action box.

Goals are later states of the same trajectory (hindsight relabelling); each evaluation runs
`eval_episodes` episodes per goal. Make the data first: `flowkit data generate cube-single-play-v0
puzzle-3x3-play-v0`.
"""

from flowkit import Study

STUDY = Study(
    name="expressivity-ogbench",
    question="How expressive is each policy class for goal-conditioned behaviour cloning on OGBench?",
    agents=("gaussian-bc", "flow-bc", "distill-bc"),
    tasks=("cube-single-play-v0", "puzzle-3x3-play-v0"),
    grid={},
    seeds=tuple(range(8)),
    fixed={"std": "constant", "squash": "clip"},
    labels={"agent": {"gaussian-bc": "Gaussian", "flow-bc": "Full Flow", "distill-bc": "One-Step Distillation"}},
    last_evals=3,
)
