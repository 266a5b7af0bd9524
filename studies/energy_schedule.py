"""Which energy schedule works for FlowQ? h(t) = t, t^2 or t^2 / (1 - t) (FlowQ Fig. 2, 3b).

The paper's learnt schedule is not offered: FlowQ's regression has no term that prefers one schedule (see
agents/flowq.py). At one lambda the schedules differ in strength too: the report's "Strength of each energy
schedule" gives each one's end-point shift relative to the exact tilt (flowkit.schedules.schedule_strength).
"""

from flowkit import Study

STUDY = Study(
    name="energy-schedule",
    question="Which energy schedule h(t) works for FlowQ: t, t^2 or t^2/(1-t)?",
    agents=("flowq",),
    tasks=("eight-gaussians", "moons", "two-spirals", "swiss-roll"),
    grid={"schedule": ("t", "t2", "t2-over-1-t")},
    seeds=(0, 1, 2),
    labels={"schedule": {"t": "t", "t2": "t²", "t2-over-1-t": "t²/(1-t)"}},
)
