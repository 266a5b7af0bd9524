"""The CPU scale of the OGBench studies: what fits a 2-core machine and still answers their questions.

Chosen by measurement (docs/results/ogbench-cpu-scale.md has the probes): with 2 x 256 networks (the public
codes' 4 x 512 cost 80 ms per update here, 2 x 256 about 11 ms on one core) FQL on cube-single task2 goes from
no success at 15k updates to about half the episodes at 40k, so a run's last three evaluations (30k, 35k, 40k)
sit on a learning curve that is still rising, clearly above 0 and below 1. Everything else keeps the public
defaults and per-task values (batch 256, learning rate 3e-4, alpha 300 on cube, ...). The data is
OGBench's cube-single-play recipe with 200 training episodes instead of 1000:
`flowkit data generate cube-single-play-v0 --episodes 200` (about 5 minutes on one core).
"""

OGBENCH_CPU_SCALE = {
    "actor_hidden": (256, 256),
    "critic_hidden": (256, 256),
    "steps": 40_000,
    "log_every": 1_000,
    "eval_every": 5_000,
    "checkpoint_every": 5_000,
    "eval_episodes": 25,
}
"""Settings every run of a CPU-scale OGBench study shares (a goal-conditioned study overrides eval_episodes,
which counts episodes per goal there)."""

CPU_SCALE_TASK = "cube-single-play-singletask-task2-v0"
"""The single task of the CPU-scale studies: the FQL paper's default cube-single task."""
