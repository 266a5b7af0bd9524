"""`flowkit bench step | methods | compile | seeds | eval`: the benchmarks of flowkit.benchmarks.bench, each
printed and optionally written to a JSON file."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowkit.agents import AGENT_CONFIGS, FLOW_AGENTS
from flowkit.cli.common import add_data_dir, positive_int
from flowkit.run_config import RunConfig, make_run_config, parse_overrides
from flowkit.settings import ConfigError, parse_value
from flowkit.solvers import SOLVERS


def add_parser(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True)
    step = bench_commands.add_parser("step", help="time FQL's update against the pure-JAX reference's")
    methods = bench_commands.add_parser("methods", help="time every flow method's update against K and solver")
    methods.add_argument("--agents", default=",".join(FLOW_AGENTS), help="comma-separated flow methods")
    methods.add_argument("--flow-steps", default="1,2,4,8,16,32", help="comma-separated K [1,2,4,8,16,32]")
    methods.add_argument("--solvers", default="euler", help="comma-separated solvers [euler]")
    for sub, iterations in ((step, 10), (methods, 5)):
        _add_update_timing(sub, iterations)
    compile_ = bench_commands.add_parser(
        "compile", help="a trial's compile time with a cold, then a warm persistent compilation cache"
    )
    seeds = bench_commands.add_parser("seeds", help="seeds as one vmapped program against one program per seed")
    seeds.add_argument("--seeds", type=positive_int, default=4, help="seeds (runs) to train [4]")
    seeds.add_argument("--iterations", type=positive_int, default=5, help="timed calls of log_every updates [5]")
    seeds.add_argument("--warmup", type=positive_int, default=1)
    evaluation = bench_commands.add_parser(
        "eval", help="environment steps/s of an OGBench evaluation against the environments' raw stepping"
    )
    evaluation.add_argument("--episodes", type=positive_int, default=50, help="episodes per evaluation [50]")
    evaluation.add_argument("--iterations", type=positive_int, default=3, help="timed evaluations [3]")
    add_data_dir(evaluation)
    for sub, task in ((compile_, "eight-gaussians"), (seeds, "eight-gaussians"),
                      (evaluation, "cube-single-play-singletask-task2-v0")):  # fmt: skip
        _add_run(sub, task)


def _add_update_timing(sub: argparse.ArgumentParser, iterations: int) -> None:
    """The options of the benchmarks that time updates on random data of a given shape (step, methods)."""
    sub.add_argument("--obs-dim", type=positive_int, default=28)
    sub.add_argument("--action-dim", type=positive_int, default=5)
    sub.add_argument(
        "--set",
        action="extend",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="method settings, e.g. batch_size=256 actor_hidden=512,512 solver=rk4 flow_steps=8",
    )
    sub.add_argument(
        "--updates-per-call",
        type=positive_int,
        default=10,
        help="updates per compiled call, a lax.scan as in training [10]",
    )
    sub.add_argument(
        "--iterations", type=positive_int, default=iterations, help=f"timed calls after warm-up [{iterations}]"
    )
    sub.add_argument("--warmup", type=positive_int, default=2, help="untimed calls first [2]")
    sub.add_argument("--json", help="also write the figures to this JSON file")


def _add_run(sub: argparse.ArgumentParser, task: str) -> None:
    """The options of the benchmarks that time a run's pieces on a real task (compile, seeds, eval)."""
    sub.add_argument("--agent", default="fql", help=f"method: {', '.join(AGENT_CONFIGS)} [fql]")
    sub.add_argument("--task", default=task, help=f"task (dataset) name [{task}]")
    sub.add_argument(
        "--set", action="extend", nargs="*", default=[], metavar="NAME=VALUE", help="run settings, as for train"
    )
    sub.add_argument("--json", help="also write the figures to this JSON file")


def cmd_bench(args: argparse.Namespace) -> int:
    results = BENCHES[args.bench_command](args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _run_config(args: argparse.Namespace) -> RunConfig:
    return make_run_config(args.agent, args.task, 0, parse_overrides(args.agent, args.set))


def _step(args: argparse.Namespace) -> Any:
    from flowkit.benchmarks import bench, bench_tables

    config = bench.agent_config("fql", parse_overrides("fql", args.set))
    results = bench.bench_step(
        args.obs_dim,
        args.action_dim,
        config,
        updates_per_call=args.updates_per_call,
        iterations=args.iterations,
        warmup=args.warmup,
    )
    print(bench_tables.format_step(results))
    return results


def _compile(args: argparse.Namespace) -> Any:
    from flowkit.benchmarks import bench, bench_tables

    results = bench.bench_compile(_run_config(args))
    print(bench_tables.format_compile(results))
    return results


def _seeds(args: argparse.Namespace) -> Any:
    from flowkit.benchmarks import bench, bench_tables

    results = bench.bench_seeds(_run_config(args), args.seeds, iterations=args.iterations, warmup=args.warmup)
    print(bench_tables.format_seeds(results))
    return results


def _eval(args: argparse.Namespace) -> Any:
    from flowkit.benchmarks import bench, bench_tables

    results = bench.bench_evaluation(_run_config(args), args.episodes, iterations=args.iterations)
    print(bench_tables.format_evaluation(results))
    return results


def _methods(args: argparse.Namespace) -> Any:
    from flowkit.benchmarks import bench, bench_tables

    agents = args.agents.split(",")
    for agent in agents:
        if agent not in FLOW_AGENTS:
            raise ConfigError(f"--agents: {agent!r} has no flow; allowed: {', '.join(FLOW_AGENTS)}")
    solver_names = args.solvers.split(",")
    for solver in solver_names:
        if solver not in SOLVERS:
            raise ConfigError(f"--solvers: unknown solver {solver!r}; allowed: {', '.join(SOLVERS)}")
    overrides = parse_overrides(agents, args.set)
    flow_steps = [parse_value("--flow-steps", int, k) for k in args.flow_steps.split(",")]
    results = bench.bench_methods(
        agents,
        flow_steps,
        solver_names,
        overrides,
        obs_dim=args.obs_dim,
        action_dim=args.action_dim,
        updates_per_call=args.updates_per_call,
        iterations=args.iterations,
        warmup=args.warmup,
    )
    print(bench_tables.format_methods(results))
    return results


BENCHES: dict[str, Callable[[argparse.Namespace], Any]] = {
    "step": _step,
    "methods": _methods,
    "compile": _compile,
    "seeds": _seeds,
    "eval": _eval,
}
"""Each `flowkit bench` subcommand's benchmark, which prints its results and returns them."""
