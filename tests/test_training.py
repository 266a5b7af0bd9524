"""The training loop: metrics stream, run folder, determinism and divergence."""

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from flowkit import runs
from flowkit._backend import COMPILATION_CACHE_ENV, compilation_cache_dir, use_compilation_cache
from flowkit.run_config import RunConfig, make_run_config
from flowkit.settings import ConfigError
from flowkit.tasks.toy import MEASURED
from flowkit.training import (
    CompiledRun,
    DivergedError,
    RunProgress,
    Seeds,
    coefficient_arrays,
    compiled_cost,
    forget_compiled_chunks,
    make_chunk,
    train,
    train_seeds,
)
from flowkit.training import chunk as chunk_module
from tests.helpers import TINY, killed_after

SMALL = {**TINY, "flow_steps": 2}
"""TINY with two flow steps: the tests of compiled programs compile a smaller one."""


def learning_curves(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in runs.read_metrics(run_dir)]


@pytest.mark.slow
def test_same_seed_gives_identical_metrics(tmp_path: Path):
    config = make_run_config("fql", "moons", 1, TINY)
    first = train(config, tmp_path / "a", progress=False)
    second = train(config, tmp_path / "b", progress=False)
    train(make_run_config("fql", "moons", 2, TINY), tmp_path / "c", progress=False)
    assert learning_curves(tmp_path / "a") == learning_curves(tmp_path / "b")
    assert first["eval_history"] == second["eval_history"]
    assert learning_curves(tmp_path / "a") != learning_curves(tmp_path / "c")


@pytest.mark.slow
def test_run_folder_holds_config_metrics_models_and_result(tmp_path: Path):
    config = make_run_config("fql", "two-spirals", 0, TINY)
    result = train(config, tmp_path, progress=False)
    recorded = json.loads((tmp_path / runs.CONFIG).read_text())
    assert recorded == config.record() and set(recorded["sources"]) == set(config.settings()), recorded["sources"]
    assert recorded["sources"]["alpha"] == {"kind": "kit", "text": MEASURED.text}, recorded["sources"]["alpha"]
    records = [json.loads(line) for line in (tmp_path / runs.METRICS).read_text().splitlines()]
    assert [(r["phase"], r["step"]) for r in records] == [("train", 100), ("eval", 100), ("train", 200), ("eval", 200)]
    assert {"critic_loss", "bc_flow_loss", "distill_loss", "q_loss", "grad_norm/flow_max"} <= set(records[0])
    assert sorted(p.name for p in (tmp_path / runs.MODELS).iterdir()) == [
        "critic.keras",
        "flow.keras",
        "onestep.keras",
        "policy.keras",
    ]
    assert runs.load_result(tmp_path) == result
    assert result["nfe_per_solve"] == 10 and result["timing"]["compile_s"] > 0


@pytest.mark.slow
def test_a_run_killed_after_a_checkpoint_resumes_to_the_same_result(tmp_path: Path):
    settings = {**TINY, "steps": 600, "eval_every": 200, "checkpoint_every": 200}
    config = make_run_config("fql", "moons", 3, settings)
    uninterrupted = train(config, tmp_path / "whole", progress=False)
    with killed_after(lambda record: record["step"] == 500):
        train(config, tmp_path / "killed", progress=False)
    assert runs.load_result(tmp_path / "killed") is None
    assert runs.load_checkpoint(tmp_path / "killed")[1]["step"] == 400
    other = make_run_config("fql", "moons", 3, {**settings, "alpha": 3.0})
    for folder, refusal in (("killed", "holds a checkpoint of other settings"), ("whole", "holds a completed run")):
        stored = {path.name: path.read_bytes() for path in (tmp_path / folder).iterdir() if path.is_file()}
        with pytest.raises(ConfigError, match=refusal):
            train(other, tmp_path / folder, progress=False)
        assert {path.name: path.read_bytes() for path in (tmp_path / folder).iterdir() if path.is_file()} == stored
    before_kill = RunProgress.from_dict(runs.load_checkpoint(tmp_path / "killed").progress, tmp_path)
    assert before_kill.step == 400 and [record["step"] for record in before_kill.eval_history] == [200, 400]
    assert before_kill.wall_s >= sum(before_kill.chunk_seconds) + before_kill.eval_s > 0, before_kill
    resumed = train(config, tmp_path / "killed", progress=False)
    assert resumed["timing"]["resumed_from_step"] == 400 and not (tmp_path / "killed" / runs.CHECKPOINT).exists()
    timing = resumed["timing"]
    assert timing["wall_s"] > before_kill.wall_s, "the wall time to the checkpoint counts"
    assert timing["wall_s"] >= timing["compile_s"] + timing["train_s"] + timing["eval_s"], timing
    assert resumed["eval_history"] == uninterrupted["eval_history"], "same evaluations, to the last digit"
    assert learning_curves(tmp_path / "killed") == learning_curves(tmp_path / "whole"), "no record lost or repeated"


def test_a_checkpoint_from_an_older_flowkit_is_refused_plainly(tmp_path: Path):
    """A checkpoint whose progress has other fields than this version stores (an older kit's, without
    checkpoint_s) is refused with a ConfigError that says so, before anything in its folder is written."""
    config = make_run_config("fql", "moons", 0, TINY)
    progress = RunProgress(config.to_dict()).to_dict()
    del progress["checkpoint_s"]
    runs.save_checkpoint(tmp_path, [np.zeros(3)], progress)
    stored = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(ConfigError, match="is a checkpoint from an older flowkit"):
        train(config, tmp_path, progress=False)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == stored


@pytest.mark.slow
def test_a_checkpoint_whose_state_is_laid_out_otherwise_is_refused_plainly(tmp_path: Path):
    """A checkpoint of these settings whose training state has another layout (an older kit's optimiser state)
    is refused with a ConfigError before anything in its folder is written."""
    config = make_run_config("fql", "moons", 0, TINY)
    progress = RunProgress(config.to_dict()).to_dict()
    runs.save_checkpoint(tmp_path, [np.zeros(3), np.zeros((2, 2))], progress)
    stored = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(ConfigError, match=r"holds a checkpoint from an older flowkit \(its training state is laid out"):
        train(config, tmp_path, progress=False)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == stored


def test_seeds_stack_and_split_back_and_one_seed_is_kept_as_it_is():
    """Several seeds' pytrees stack on a leading axis and split back to each seed's; one seed's pass unchanged
    (its chunk is not vmapped), so the loop stacks and splits alike for one seed and many."""
    trees = [{"w": np.full(2, seed, np.float32), "k": np.uint32(seed)} for seed in (3, 5, 7)]
    stacked = Seeds(3).stack(trees)
    assert stacked["w"].shape == (3, 2) and Seeds(3).vectorized, stacked
    split = [{name: leaf.tolist() for name, leaf in tree.items()} for tree in Seeds(3).split(stacked)]
    assert split == [{"w": [seed] * 2, "k": seed} for seed in (3, 5, 7)], split
    assert Seeds(1).stack(trees[:1]) is trees[0] and Seeds(1).split(trees[0])[0] is trees[0]
    assert not Seeds(1).vectorized


@pytest.mark.slow
def test_divergence_stops_the_run_at_the_update_it_happened(tmp_path: Path):
    config = make_run_config("fql", "moons", 0, {**TINY, "lr": 1e30})
    with pytest.raises(DivergedError) as error:
        train(config, tmp_path, progress=False)
    assert 1 <= error.value.step <= 100
    assert "became non-finite" in str(error.value)
    assert runs.load_result(tmp_path) is None


@pytest.mark.slow
def test_cost_of_a_chunk_is_the_cost_of_one_update():
    """XLA counts a scan's body once, so the chunk's FLOPs are one update's: the run's GFLOP per update."""
    config = make_run_config("fql", "moons", 0, TINY)
    compiled = CompiledRun.create(config)
    state = compiled.agent.init(0)
    batch = compiled.task.dataset.sample(jax.random.PRNGKey(0), config.agent_config.batch_size)
    single = jax.jit(compiled.agent.update).lower(state, batch).compile().cost_analysis()["flops"]
    chunk = compiled.compiled_chunk(state, jax.random.PRNGKey(1))
    cost = compiled_cost(chunk.compiled)
    assert abs(cost["gflop_per_update"] * 1e9 / single - 1) < 0.01, (cost, single)
    assert cost["peak_memory_mb"] > 0


@pytest.mark.slow
def test_a_later_run_of_the_same_program_takes_the_kept_chunk_without_tracing(tmp_path: Path, monkeypatch):
    """A worker's next run of the same program (new CompiledRun, agent and Keras models; another seed or another alpha,
    a coefficient the chunk takes as an argument) gets the compiled chunk the process kept: make_chunk is not
    traced again. Another solver is another program. A run on the kept chunk equals one on a chunk compiled
    afresh, and the coefficients still act: alpha 3 and 10, and learning rates 3e-4 and 1e-3, on one program give
    different learning curves."""
    traced = []
    monkeypatch.setattr(chunk_module, "make_chunk", lambda *args: traced.append(args) or make_chunk(*args))
    monkeypatch.setenv(COMPILATION_CACHE_ENV, "off")  # the process's kept chunks only, none stored on disk
    forget_compiled_chunks()

    def chunk_of(seed: int, **settings):
        compiled = CompiledRun.create(make_run_config("fql", "moons", seed, {**SMALL, **settings}))
        return compiled.compiled_chunk(compiled.agent.init(seed), jax.random.PRNGKey(seed))

    program = chunk_of(0, alpha=10.0).compiled
    assert chunk_of(1, alpha=10.0).compiled is program and len(traced) == 1
    assert chunk_of(0, alpha=3.0).compiled is program and len(traced) == 1
    assert chunk_of(0, solver="midpoint").compiled is not program and len(traced) == 2

    config = make_run_config("fql", "moons", 0, {**SMALL, "alpha": 3.0})
    kept = train(config, tmp_path / "kept", progress=False)
    assert len(traced) == 2, "the run took the kept chunk"
    forget_compiled_chunks()
    fresh = train(config, tmp_path / "fresh", progress=False)
    assert len(traced) == 3 and kept["eval_history"] == fresh["eval_history"]
    assert learning_curves(tmp_path / "kept") == learning_curves(tmp_path / "fresh")
    train(make_run_config("fql", "moons", 0, {**SMALL, "alpha": 10.0}), tmp_path / "alpha10", progress=False)
    assert len(traced) == 3 and learning_curves(tmp_path / "alpha10") != learning_curves(tmp_path / "kept")
    # The learning rate is one too: Adam's step reads it from the program's coefficient arguments.
    train(make_run_config("fql", "moons", 0, {**SMALL, "alpha": 3.0, "lr": 1e-3}), tmp_path / "lr", progress=False)
    assert len(traced) == 3 and learning_curves(tmp_path / "lr") != learning_curves(tmp_path / "kept")
    monkeypatch.undo()
    use_compilation_cache()


def _train_in_this_process(config: dict, run_dir: Path) -> list[str]:
    train(RunConfig.from_dict(config), run_dir, progress=False)
    return [entry.name for entry in compilation_cache_dir().joinpath("executables").glob("*.pickle")]


@pytest.mark.slow
def test_a_fresh_process_loads_the_stored_executable_without_tracing(tmp_path: Path, monkeypatch):
    """Another process (a worker, the next `study run`) with the same program and code loads the executable the
    first stored in the cache folder: make_chunk is not traced, and the run equals the first process'. An entry
    that cannot be read is compiled again (with a warning naming it) and replaced, with the same result."""
    monkeypatch.setenv(COMPILATION_CACHE_ENV, str(tmp_path / "cache"))
    forget_compiled_chunks()
    config = make_run_config("fql", "moons", 0, {**SMALL, "alpha": 3.0})
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        (stored,) = pool.submit(_train_in_this_process, config.to_dict(), tmp_path / "first").result()
    traced = []
    monkeypatch.setattr(chunk_module, "make_chunk", lambda *args: traced.append(args) or make_chunk(*args))
    train(config, tmp_path / "loaded", progress=False)
    assert traced == [] and learning_curves(tmp_path / "loaded") == learning_curves(tmp_path / "first")

    entry = tmp_path / "cache" / "executables" / stored
    entry.write_bytes(entry.read_bytes()[:1000])
    forget_compiled_chunks()
    with pytest.warns(UserWarning, match=f"could not load the stored executable {entry}"):
        train(config, tmp_path / "recompiled", progress=False)
    assert len(traced) == 1 and learning_curves(tmp_path / "recompiled") == learning_curves(tmp_path / "first")
    forget_compiled_chunks()
    train(make_run_config("fql", "moons", 1, {**SMALL, "alpha": 10.0}), tmp_path / "other_seed", progress=False)
    assert len(traced) == 1, "the replaced entry loads, for another seed and alpha too"
    forget_compiled_chunks()
    monkeypatch.undo()
    use_compilation_cache()


@pytest.mark.slow
def test_seeds_in_one_program_give_the_results_of_separate_runs(tmp_path: Path):
    """Two seeds vmapped in one program against two separate runs (200 updates, TINY networks): every
    logged loss, metric and gradient norm and every final evaluation metric agrees to a relative 1e-4
    (measured: 7e-7; vmapping reorders float sums), and each run folder holds the same files."""
    configs = [make_run_config("fql", "moons", seed, TINY) for seed in (0, 1)]
    separate = [train(config, tmp_path / f"separate{config.seed}", progress=False) for config in configs]
    together = train_seeds(configs, [tmp_path / f"together{c.seed}" for c in configs], progress=False)
    for config, alone, joint in zip(configs, separate, together, strict=True):
        alone_dir, joint_dir = tmp_path / f"separate{config.seed}", tmp_path / f"together{config.seed}"
        assert sorted(p.name for p in joint_dir.rglob("*")) == sorted(p.name for p in alone_dir.rglob("*"))
        assert runs.read_json(joint_dir / runs.CONFIG) == config.record()
        alone_curve, joint_curve = learning_curves(alone_dir), learning_curves(joint_dir)
        assert [set(r) for r in joint_curve] == [set(r) for r in alone_curve]
        for alone_record, joint_record in zip(alone_curve, joint_curve, strict=True):
            for name, value in alone_record.items():
                if isinstance(value, float):
                    assert joint_record[name] == pytest.approx(value, rel=1e-4, abs=1e-6), (config.seed, name)
        for name in ("reward_mean", "support", "reward_in_support", "energy_distance"):
            assert joint["final"][name] == pytest.approx(alone["final"][name], rel=1e-4), (config.seed, name)
        assert joint["timing"]["seeds_in_program"] == 2 and alone["timing"]["seeds_in_program"] == 1
    assert together[0]["final"]["reward_mean"] != together[1]["final"]["reward_mean"], "the seeds differ"


def _compile_after_barrier(config: dict, barrier: Any) -> tuple[int, list[float]]:
    traced = []
    original = chunk_module.make_chunk
    chunk_module.make_chunk = lambda *args: traced.append(args) or original(*args)
    compiled = CompiledRun.create(RunConfig.from_dict(config))
    state, key = compiled.agent.init(0), jax.random.PRNGKey(0)
    barrier.wait()
    chunk = compiled.compiled_chunk(state, key)
    summary = chunk(state, compiled.task.dataset, key)[2]
    return len(traced), [float(value) for value in jax.tree.leaves(summary)]


@pytest.mark.slow
def test_workers_needing_the_same_program_compile_it_once(tmp_path: Path, monkeypatch):
    """Two worker processes that reach the same program at the same moment (a barrier) take turns: one traces and
    compiles it, the other waits and loads it; both chunks give the same summary."""
    monkeypatch.setenv(COMPILATION_CACHE_ENV, str(tmp_path / "cache"))
    config = make_run_config("fql", "moons", 0, SMALL).to_dict()
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager:
        barrier = manager.Barrier(2)
        with ProcessPoolExecutor(2, mp_context=spawn) as pool:
            first, second = [pool.submit(_compile_after_barrier, config, barrier) for _ in range(2)]
            (first_traces, first_summary), (second_traces, second_summary) = first.result(), second.result()
    assert sorted((first_traces, second_traces)) == [0, 1] and first_summary == second_summary
    monkeypatch.undo()
    use_compilation_cache()


@pytest.mark.slow
def test_the_stored_chunk_is_compiled_even_where_jax_cache_holds_the_program(tmp_path: Path, monkeypatch):
    """XLA:CPU serialises an executable loaded from JAX's persistent cache without some of its kernels (running
    the copy fails: "Function multiply_bitcast_fusion not found"). With JAX's cache holding the chunk, as after a
    change to flowkit's code, the stored entry is compiled afresh: loaded, it runs and gives the chunk's result."""
    monkeypatch.setenv(COMPILATION_CACHE_ENV, str(tmp_path / "cache"))
    forget_compiled_chunks()
    compiled = CompiledRun.create(make_run_config("fql", "moons", 0, SMALL))

    def arguments():
        state = compiled.agent.init(0)
        return state, compiled.task.dataset, jax.random.PRNGKey(0), coefficient_arrays(compiled.agent.config)

    chunk = make_chunk(compiled.agent, TINY["batch_size"], TINY["log_every"])
    expected = jax.jit(chunk, donate_argnums=0).lower(*arguments()).compile()(*arguments())
    assert [p for p in (tmp_path / "cache").iterdir() if p.name.startswith("jit_chunk-")], "JAX's cache holds it"
    compiled.compiled_chunk(compiled.agent.init(0), jax.random.PRNGKey(0))
    forget_compiled_chunks()
    loaded = compiled.compiled_chunk(compiled.agent.init(0), jax.random.PRNGKey(0))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), loaded(*arguments()[:3]), expected))
    forget_compiled_chunks()
    monkeypatch.undo()
    use_compilation_cache()


@pytest.mark.slow
def test_seeds_in_one_program_killed_after_a_checkpoint_resume_to_the_same_result(tmp_path: Path):
    settings = {**TINY, "steps": 300, "eval_every": 300, "checkpoint_every": 100}
    configs = [make_run_config("fql", "moons", seed, settings) for seed in (0, 1)]
    whole = train_seeds(configs, [tmp_path / f"whole{c.seed}" for c in configs], progress=False)
    killed_dirs = [tmp_path / f"killed{c.seed}" for c in configs]
    with killed_after(lambda record: record["step"] == 200):
        train_seeds(configs, killed_dirs, progress=False)
    assert [runs.load_checkpoint(d)[1]["step"] for d in killed_dirs] == [100, 100]
    resumed = train_seeds(configs, killed_dirs, progress=False)
    for seed, (before, after) in enumerate(zip(whole, resumed, strict=True)):
        assert after["timing"]["resumed_from_step"] == 100
        assert after["eval_history"] == before["eval_history"], "same evaluations, to the last digit"
        assert learning_curves(tmp_path / f"killed{seed}") == learning_curves(tmp_path / f"whole{seed}")


@pytest.mark.slow
def test_progress_written_to_a_log_is_plain_lines(tmp_path: Path, capfd):
    """Standard error that is not a terminal (a log file, a CI console) gets one plain line at the end (and one
    every PLAIN_EVERY_S seconds), never the cursor movements of a redrawn bar."""
    config = make_run_config("fql", "moons", 0, {**TINY, "steps": 300, "eval_every": 300})
    train(config, tmp_path / "run", progress=True)
    err = capfd.readouterr().err
    assert "\x1b[" not in err and "\r" not in err, repr(err[:300])
    assert err.splitlines()[-1].startswith("fql: 300/300 updates (100%) reward_in_support="), err
