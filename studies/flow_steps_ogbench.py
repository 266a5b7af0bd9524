"""How many flow steps does FQL need on OGBench (the FQL paper)? K in {1, 2, 4, 8, 16} on the FQL paper's default
cube-single, scene and puzzle-3x3 tasks at the public code's scale (4 x 512, 1M updates): for a GPU.
flow-steps-ogbench-cpu is the same question at the CPU scale. Make the data first: `flowkit data generate
cube-single-play-v0 scene-play-v0 puzzle-3x3-play-v0 --workers N`.
"""

from flowkit import Study

STEPS = (1, 2, 4, 8, 16)

STUDY = Study(
    name="flow-steps-ogbench",
    question="How many flow steps does FQL need on OGBench? K in {1, 2, 4, 8, 16} at the public scale.",
    agents=("fql",),
    tasks=(
        "cube-single-play-singletask-task2-v0",
        "scene-play-singletask-task2-v0",
        "puzzle-3x3-play-singletask-task4-v0",
    ),
    grid={"flow_steps": STEPS},
    seeds=tuple(range(8)),
    labels={"flow_steps": {k: f"K={k}" for k in STEPS}},
    last_evals=3,
)
