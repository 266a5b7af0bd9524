"""`flowkit data generate | list`: make OGBench datasets with its own oracles, and list which are present."""

from __future__ import annotations

import argparse

from flowkit.cli.common import add_data_dir, positive_int


def add_parser(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="make and list OGBench datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    generate = data_commands.add_parser(
        "generate", help="make OGBench datasets with OGBench's environments and scripted oracles (resumable)"
    )
    generate.add_argument("names", nargs="+", metavar="NAME", help="dataset names, e.g. cube-single-play-v0")
    generate.add_argument("--episodes", type=positive_int, help="training episodes (default: OGBench's, 1000)")
    generate.add_argument(
        "--val-episodes", type=positive_int, help="validation episodes (default: a tenth of --episodes, at least 1)"
    )
    generate.add_argument("--seed", type=int, default=0, help="episode i is seeded from (seed, i) [0]")
    generate.add_argument("--workers", type=positive_int, default=1, help="processes making episodes [1]")
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    data_list = data_commands.add_parser("list", help="the task names, and which datasets are present")
    for sub in (generate, data_list):
        add_data_dir(sub)


def cmd_data(args: argparse.Namespace) -> int:
    from flowkit.tasks import data_dir, ogbench_generate, ogbench_tasks, toy

    folder = data_dir()
    if args.data_command == "generate":
        for name in args.names:
            ogbench_generate.check_recipe(name)
        for name in args.names:
            ogbench_generate.generate(
                name, folder, episodes=args.episodes, val_episodes=args.val_episodes, seed=args.seed,
                workers=args.workers, progress=not args.quiet,
            )  # fmt: skip
        return 0
    print(f"2D bandits (built in): {', '.join(toy.TOY_TASKS)}")
    print(f"OGBench datasets in {folder} (task names: DATASET for goal-conditioned runs, "
          "STEM-singletask-task1..5-v0 and STEM-singletask-v0 for single-task runs):")  # fmt: skip
    for name in ogbench_generate.RECIPES:
        train, val = ogbench_generate.dataset_paths(name, folder)
        present = train.exists() and val.exists()
        status = f"present ({train.stat().st_size / 2**20:.0f} MiB)" if present else "absent: flowkit data generate"
        single = f"{name.removesuffix('-v0')}-singletask-v0"
        default = ogbench_tasks.split_name(single)[1]
        print(f"  {name:32s} {status:36s} default single task: task{default} ({single})")
    return 0
