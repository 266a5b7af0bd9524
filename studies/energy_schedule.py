"""Which energy schedule works for FlowQ? h(t) = t, t^2, t^2 / (1 - t), or a learnt one (FlowQ Fig. 2, 3b)."""

from flowkit import Study

STUDY = Study(
    name="energy-schedule",
    question="Which energy schedule h(t) works for FlowQ: t, t^2, t^2/(1-t) or a learnt one?",
    agents=("flowq",),
    tasks=("eight-gaussians", "moons", "two-spirals", "swiss-roll"),
    grid={"schedule": ("t", "t2", "t2-over-1-t", "learnable")},
    seeds=(0, 1, 2),
    labels={"schedule": {"t": "t", "t2": "t²", "t2-over-1-t": "t²/(1-t)", "learnable": "learnt"}},
)
