"""How much expressivity does each policy class keep? Behaviour cloning with a Gaussian, the full flow, and
the flow distilled into a one-step policy (the FQL reviews' ablation).

On the 2D bandits the measure is the energy distance between the policy's samples and the data (lower is
better): a Gaussian covers a multimodal dataset with one bump, acting with its mode puts every action on one
point. (`support` alone would not tell: on two-spirals the Gaussian's mode sits on the dense centre.)
"""

from flowkit import Study

STUDY = Study(
    name="expressivity",
    question="How expressive is each policy class? Behaviour cloning with a Gaussian, a full flow, a distilled flow.",
    agents=("gaussian-bc", "flow-bc", "distill-bc"),
    tasks=("eight-gaussians", "moons", "two-spirals", "swiss-roll"),
    grid={},
    seeds=(0, 1, 2),
    labels={"agent": {"gaussian-bc": "Gaussian", "flow-bc": "Full Flow", "distill-bc": "One-Step Distillation"}},
    metric="energy_distance",
)
