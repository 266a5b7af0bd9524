"""How `flowkit bench` prints each benchmark's results (benchmarks/bench.py measures them), with the cost fits
of `bench methods` against K."""

from __future__ import annotations

from typing import Any

from flowkit.analysis.cost import CostFit, fit_cost


def format_compile(results: dict[str, Any]) -> str:
    lines = [
        f"training chunk of a {results['agent']} trial on {results['task']} "
        f"(hidden {'x'.join(map(str, results['hidden']))}, {results['log_every']} updates per chunk)",
        f"{'':58s} {'seconds':>8s} {'of cold':>8s}",
    ]
    for name, label in (
        ("cold", "empty cache: trace, lower, compile"),
        ("same_process", "next trial, same process: the chunk the process kept"),
        ("fresh_process", "fresh process, warm cache: load the stored executable"),
    ):
        seconds = results[f"{name}_s"]
        lines.append(f"{label:58s} {seconds:8.3f} {100 * seconds / results['cold_s']:7.1f}%")
    lines.append(f"cache entries: {results['cache_mb']:.1f} MB; load average at the end {results['load_average']:.1f}")
    return "\n".join(lines)


def format_seeds(results: dict[str, Any]) -> str:
    ms = results["ms_per_update_per_seed"]
    return "\n".join(
        [
            f"{results['seeds']} seeds of {results['agent']} on {results['task']} (hidden "
            f"{'x'.join(map(str, results['hidden']))}, batch {results['batch_size']}, {results['updates_per_call']} "
            f"updates per call, {results['iterations']} timed calls, {results['device']})",
            f"one vmapped program:   {ms['one_program']:.3f} ms per update per seed",
            f"sequential programs:   {ms['sequential']:.3f} ms per update per seed",
            f"speed-up of one program: {results['speedup']:.2f}x "
            f"(load average at the end {results['load_average']:.1f})",
        ]
    )


def format_evaluation(results: dict[str, Any]) -> str:
    rate = results["steps_per_second"]
    return "\n".join(
        [
            f"evaluation on {results['task']}: {results['episodes']} episodes, {results['lockstep']} at a time "
            f"in lockstep, policy hidden "
            f"{'x'.join(map(str, results['hidden']))}, {results['iterations']} timed evaluations",
            f"evaluation (policy + environments): {rate['evaluation']:8.0f} environment steps/s",
            f"environments alone (random actions): {rate['raw']:7.0f} environment steps/s",
            f"evaluation / raw stepping: {100 * results['share_of_raw']:.0f}% "
            f"(load average at the end {results['load_average']:.1f})",
        ]
    )


def format_step(results: dict[str, Any]) -> str:
    lines = [
        f"FQL update: obs {results['obs_dim']}, action {results['action_dim']}, batch {results['batch_size']}, "
        f"hidden {'x'.join(map(str, results['hidden']))}, {results['solver']} K={results['flow_steps']} "
        f"(NFE {results['nfe_per_solve']}), {results['iterations']} timed calls of {results['updates_per_call']} "
        f"updates in a lax.scan, {results['device']}",
        f"{'':10s} {'compile s':>10s} {'ms/update':>10s} {'GFLOP':>8s} {'GFLOP/s':>8s} {'of peak':>8s}",
    ]
    for name in ("flowkit", "reference"):
        r = results[name]
        lines.append(
            f"{name:10s} {r['compile_s']:10.2f} {r['ms_per_update']:10.2f} {r['gflop_per_update']:8.2f} "
            f"{r['gflops']:8.1f} {100 * r['share_of_peak']:7.1f}%"
        )
    lines.append(
        f"matmul peak {results['matmul_peak_gflops']:.1f} GFLOP/s; flowkit / reference = {results['ratio']:.3f}"
    )
    return "\n".join(lines)


def methods_cost_fits(rows: list[dict[str, Any]]) -> dict[tuple[str, str], CostFit]:
    """Per method and solver timed at three or more K: the OLS line of ms per update on K, the fit the reports
    draw for a study's runs (analysis.cost)."""
    points: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for row in rows:
        points.setdefault((row["agent"], row["solver"]), []).append((row["flow_steps"], row["ms_per_update"]))
    return {
        arm: fit_cost(*zip(*arm_points, strict=True))
        for arm, arm_points in points.items()
        if len({steps for steps, _ in arm_points}) >= 3
    }


def format_methods(rows: list[dict[str, Any]]) -> str:
    header = ("method", "solver", "K", "NFE", "ms/update", "IQR", "GFLOP", "compile s")
    lines = ["{:12s} {:9s} {:>3s} {:>4s} {:>10s} {:>7s} {:>8s} {:>10s}".format(*header)]
    for r in rows:
        lines.append(
            f"{r['agent']:12s} {r['solver']:9s} {r['flow_steps']:3d} {r['nfe_per_solve']:4d} "
            f"{r['ms_per_update']:10.2f} {r['ms_iqr']:7.2f} {r['gflop_per_update']:8.3f} {r['compile_s']:10.2f}"
        )
    counted = {r["agent"]: r["parameters"] for r in rows if "parameters" in r}
    if counted:
        lines += ["", "{:12s} {:>12s}  {}".format("method", "parameters", "per network (weights of each Keras model)")]
    for agent, counts in counted.items():
        networks = ", ".join(f"{name} {count:,}" for name, count in counts.items())
        lines.append(f"{agent:12s} {sum(counts.values()):>12,}  {networks}")
    fits = methods_cost_fits(rows)
    if fits:
        lines += ["", "ms per update = a + b K (OLS over the K above; b with its 95% interval)"]
        header = ("method", "solver", "a", "b", "R2", "flat in K")
        lines.append("{:12s} {:9s} {:>8s} {:>26s} {:>6s} {:>10s}".format(*header))
        for (agent, solver), fit in fits.items():
            slope = f"{fit.slope:.2f} [{fit.slope_low:.2f}, {fit.slope_high:.2f}]"
            flat = "yes" if fit.flat() else "no"
            lines.append(f"{agent:12s} {solver:9s} {fit.intercept:8.2f} {slope:>26s} {fit.r_squared:6.3f} {flat:>10s}")
    return "\n".join(lines)
