"""How much expressivity does each policy class keep? Behaviour cloning with a Gaussian, the full flow, and
the flow distilled into a one-step policy (the FQL reviews' ablation, seed 000).

On the 2D bandits the measure is `support`, the share of the policy's samples that land on the data: a
Gaussian covers a multimodal dataset with one bump and puts its mass between the modes.
"""

from studies.study import Study

STUDY = Study(
    name="expressivity",
    question="How expressive is each policy class? Behaviour cloning with a Gaussian, a full flow, a distilled flow.",
    agents=("gaussian-bc", "flow-bc", "distill-bc"),
    tasks=("eight-gaussians", "moons", "two-spirals", "swiss-roll"),
    grid={},
    seeds=(0, 1, 2),
    labels={"agent": {"gaussian-bc": "Gaussian", "flow-bc": "Full Flow", "distill-bc": "One-Step Distillation"}},
    metric="support",
)
