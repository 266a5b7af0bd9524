"""Does the probability path matter? FQL's flow matching on the linear (default), cosine and VP paths.

A reviewer of FQL (the FQL reviews) asked about other marginal probability paths; the authors answered that they had
not tested them and expected similar results. The flow BC policy that the one-step policy distils from is
trained on each path (docs/methods.md#probability-paths); everything else stays at its default.
"""

from flowkit import Equivalence, Study

STUDY = Study(
    name="probability-path",
    question="Does FQL's probability path matter? Linear (default), cosine and variance-preserving paths, K = 10.",
    agents=("fql",),
    tasks=("eight-gaussians",),
    grid={"path": ("linear", "cosine", "vp")},
    seeds=(0, 1, 2),
    claim=Equivalence(margin=0.05),  # the authors' "similar results", on the in-support reward
)
