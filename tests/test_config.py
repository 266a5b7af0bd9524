"""Settings are refused with a message naming the setting, what was wrong and what is allowed."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from flowkit import cli
from flowkit.agents import AGENT_CONFIGS
from flowkit.reports.run_facts import FirstCellSettings
from flowkit.run_config import RunConfig, make_run_config, parse_overrides, setting_names
from flowkit.settings import ConfigError, Source, TrainConfig
from flowkit.studies import load_study
from flowkit.tasks import covers, defaults_markdown, task_families, task_names


@pytest.mark.parametrize(
    ("assignments", "expected"),
    [
        (["alhpa=3"], "setting 'alhpa' is unknown for 'fql' (did you mean 'alpha'?)"),
        (["alpha=-1"], "alpha: -1.0 is out of range; allowed: a number >= 0"),
        (["alpha=three"], "alpha: expected a number, got 'three'"),
        (["flow_steps=2.5"], "flow_steps: expected an integer, got '2.5'"),
        (["flow_steps=0"], "flow_steps: 0 is out of range; allowed: an integer >= 1"),
        (["solver=rk45"], "solver: 'rk45' is not allowed; allowed: one of 'euler', 'midpoint', 'rk4'"),
        (["normalize_q_loss=maybe"], "normalize_q_loss: expected true or false, got 'maybe'"),
        (["lr=0"], "lr: 0.0 is out of range; allowed: a number > 0"),
        (["actor_hidden=64,0"], "actor_hidden: expected a comma-separated list of positive integers"),
        (["alpha"], "--set: 'alpha' is not of the form name=value"),
        (["steps=1500"], "steps: 1500 is not a multiple of log_every=1000"),
    ],
)
def test_bad_settings_are_refused_with_what_is_allowed(assignments, expected):
    with pytest.raises(ConfigError) as error:
        make_run_config("fql", "eight-gaussians", 0, parse_overrides("fql", assignments))
    assert expected in str(error.value)


def test_unknown_agent_and_task_are_named():
    with pytest.raises(ConfigError, match=r"agent: unknown method 'fqll' \(did you mean 'fql'\?\); allowed: fql"):
        make_run_config("fqll", "eight-gaussians")
    with pytest.raises(ConfigError, match=r"task: unknown task 'eight-gausians' \(did you mean 'eight-gaussians'\?\)"):
        make_run_config("fql", "eight-gausians")


def test_overrides_are_typed_and_layered_over_defaults():
    config = make_run_config("fql", "moons", 3, parse_overrides("fql", ["alpha=3", "solver=rk4", "flow_steps=8"]))
    assert (config.agent_config.alpha, config.agent_config.solver, config.agent_config.flow_steps) == (3.0, "rk4", 8)
    assert config.agent_config.actor_hidden == (64, 64, 64), "the toy family's default applies"
    assert config.agent_config.lr == 3e-4, "the method's default applies"
    assert make_run_config("fql", "moons", 3, {"alpha": 3}).agent_config.alpha == 3.0


def test_run_config_round_trips_through_json_form():
    config = make_run_config("fql", "swiss-roll", 2, {"alpha": 7, "actor_hidden": (16, 8)})
    assert type(config).from_dict(config.to_dict()) == config


def test_setting_names_are_unique_and_family_defaults_are_settings():
    for agent, config_class in AGENT_CONFIGS.items():
        assert not set(config_class.setting_types()) & set(TrainConfig.setting_types()), agent
    for family in task_families():
        for where, agent, settings, _ in family.defaults_table():
            assert agent == "*" or agent in AGENT_CONFIGS, (where, agent)
            agents = AGENT_CONFIGS if agent == "*" else [agent]
            for name in settings:
                assert any(name in setting_names(a) for a in agents), (where, agent, name)


def test_every_family_default_has_a_source_and_reaches_a_task():
    """Each declaration cites where it comes from with a known kind (a preset: another paper's), and each prefix
    (declared, cited or a preset's) names tasks."""
    names = task_names()
    for family in task_families():
        for where, agent, _, source in family.defaults_table():
            assert source.kind in ("paper", "other paper", "kit", "none") and source.text, (where, agent, source)
            assert ("preset=" in where) == (source.kind == "other paper"), (where, source)
        for table in (family.task_defaults, *family.presets.values()):
            for prefix in table:
                reached = [name for name in names if covers(prefix, name)]
                assert reached, f"{family.family} prefix {prefix!r} covers none of the kit's tasks"


def test_family_defaults_resolve_per_task():
    """The longest matching prefix wins, and each value reaches the run's settings."""
    adroit = make_run_config("fql", "d4rl_adroit_pen/v1-expert")
    assert (adroit.agent_config.alpha, adroit.agent_config.q_agg, adroit.train.steps) == (3000.0, "min", 500_000), (
        adroit.agent_config.alpha,
        adroit.agent_config.q_agg,
        adroit.train.steps,
    )
    assert make_run_config("fql", "d4rl_adroit_pen/v0-expert").agent_config.alpha == 10.0
    lams = {
        task: make_run_config("qflow", task).agent_config.lam
        for task in (
            "cube-single-play-singletask-task1-v0",
            "cube-double-play-singletask-v0",
            "scene-play-singletask-task2-v0",
            "puzzle-4x4-play-singletask-task4-v0",
            "pointmaze-medium-navigate-singletask-v0",
            "eight-gaussians",
        )
    }
    assert list(lams.values()) == [0.2, 0.5, 0.2, 0.05, 1.0, 1.0], lams
    assert make_run_config("qflow", "puzzle-3x3-play-singletask-v0").agent_config.q_agg == "min"
    assert make_run_config("fql", "cube-double-noisy-singletask-v0").agent_config.alpha == 300.0


def test_docs_list_the_task_families_declared_defaults():
    """docs/methods.md's defaults table is the one the task classes declare (regenerate it with
    flowkit.tasks.defaults_markdown() after changing a declaration)."""
    text = (Path(__file__).parents[1] / "docs" / "methods.md").read_text()
    start = text.index("-->\n", text.index("<!-- defaults-table")) + len("-->\n")
    documented = text[start : text.index("<!-- end defaults-table -->")].strip()
    assert documented == defaults_markdown(), f"docs/methods.md:\n{documented}\ndeclared:\n{defaults_markdown()}"


def test_each_resolved_value_keeps_its_source():
    """Method default < task family < study < command line, each value with the source of the layer it came from."""
    config = make_run_config("fql", "cube-single-play-singletask-task2-v0", 0, {"flow_steps": 4})
    kinds = {name: config.sources[name].kind for name in ("lr", "alpha", "flow_steps", "log_every", "steps")}
    assert kinds == {"lr": "paper", "alpha": "paper", "flow_steps": "command line", "log_every": "kit",
                     "steps": "paper"}, kinds  # fmt: skip
    assert "README.md @719d044 lines 96" in config.sources["alpha"].text, config.sources["alpha"]
    assert set(config.sources) == set(config.settings()), set(config.settings()) ^ set(config.sources)
    toy = make_run_config("rebrac", "moons")
    assert (toy.agent_config.alpha_actor, toy.sources["alpha_actor"].kind) == (0.1, "kit"), toy.sources["alpha_actor"]
    assert toy.sources["alpha_critic"].kind == "none", "the bandits are not real tasks: no refusal, but no source"
    stored = RunConfig.from_dict(json.loads(json.dumps(config.record())))
    assert (stored, stored.sources) == (config, config.sources), stored.sources


@pytest.mark.parametrize(
    ("agent", "task", "named"),
    [
        ("rebrac", "cube-single-play-singletask-task2-v0", "alpha_actor, alpha_critic"),
        ("fbrac", "scene-play-singletask-task2-v0", "alpha"),
        ("rebrac", "d4rl_adroit_pen/v1-human", "alpha_actor, alpha_critic"),
        ("flowq", "puzzle-3x3-play-singletask-v0", "lam"),
    ],
)
def test_unsourced_constraint_on_a_real_task_is_refused(agent, task, named):
    with pytest.raises(ConfigError) as error:
        make_run_config(agent, task)
    message = str(error.value)
    assert message.startswith(f"{named}: {agent!r} on the real task {task!r} has no sourced value"), message
    assert f"--set {named.replace(', ', '=VALUE ')}=VALUE" in message, message
    assert "\n" not in message, message
    config = make_run_config(agent, task, 0, parse_overrides(agent, [f"{name}=0.1" for name in named.split(", ")]))
    assert {config.sources[name].kind for name in named.split(", ")} == {"command line"}, config.sources


def test_refusal_names_the_sources_that_exist_and_the_tuning_study():
    """Scene: Guided Flow Policy's tuning is a preset for this task; cube-single: only for other tasks."""
    with pytest.raises(ConfigError) as scene:
        make_run_config("rebrac", "scene-play-singletask-task2-v0")
    here = "sources for this task: preset gfp (scene-play: alpha_actor=0.1 alpha_critic=0.001) (`--set preset=NAME`"
    assert here in str(scene.value), str(scene.value)
    with pytest.raises(ConfigError) as cube:
        make_run_config("rebrac", "cube-single-play-singletask-task2-v0")
    message = str(cube.value)
    assert "sources for this task: none" in message and "humanoidmaze-medium" in message, message
    assert "preset gfp (scene-play: alpha_actor=0.1 alpha_critic=0.001)" in message, message
    assert "`flowkit study run rebrac-alphas-ogbench-cpu`" in message, message


def test_a_preset_is_another_papers_tuning_the_user_opts_into():
    config = make_run_config("rebrac", "scene-play-singletask-task2-v0", 0, parse_overrides("rebrac", ["preset=gfp"]))
    alphas = (config.agent_config.alpha_actor, config.agent_config.alpha_critic)
    assert alphas == (0.1, 0.001), alphas
    assert config.sources["alpha_critic"].kind == "other paper", config.sources["alpha_critic"]
    assert "rebrac_params.csv @49f6b17 line 19" in config.sources["alpha_critic"].text, config.sources["alpha_critic"]
    assert config.record()["preset"] == "gfp"
    with pytest.raises(ConfigError, match=r"preset: 'gfp' sets nothing for 'rebrac' on 'cube-single-play-single"):
        make_run_config("rebrac", "cube-single-play-singletask-task2-v0", 0, {"preset": "gfp"})


def test_a_study_that_sets_the_coefficients_itself_runs():
    """The ReBRAC search study samples both alphas (its declared cell has none yet): it loads, and its sampled
    cells' alphas are sourced by the study."""
    study = load_study("rebrac-alphas-ogbench-cpu")
    cell = study.sampled_cell({"alpha_actor": 0.05, "alpha_critic": 0.01}, 0)
    config = study.run_config(cell, 0)
    assert config.sources["alpha_actor"] == Source("study", "rebrac-alphas-ogbench-cpu"), config.sources
    assert set(study.search.space) == {"alpha_actor", "alpha_critic"}
    assert config.task == "cube-single-play-singletask-task2-v0"


def test_qflow_time_embedding_width_is_the_public_per_domain_one():
    widths = {
        task: (make_run_config("qflow", task).agent_config.time_embed_dim, make_run_config("qflow", task).sources)
        for task in ("cube-single-play-singletask-task2-v0", "cube-double-play-singletask-v0", "eight-gaussians")
    }
    assert [width for width, _ in widths.values()] == [64, 16, 16], widths
    assert [sources["time_embed_dim"].kind for _, sources in widths.values()] == ["paper", "paper", "kit"]
    with pytest.raises(ConfigError, match="time_embed_dim: 15 is odd"):
        make_run_config("qflow", "moons", 0, {"time_embed_dim": 15})


def test_train_refuses_before_looking_for_data_and_proceeds_with_values(tmp_path, monkeypatch, capsys):
    """With an empty data dir: refused with one error line, no run folder; with both alphas set, the run goes on
    to look for its data (and stops there, cheaply)."""
    monkeypatch.setenv("FLOWKIT_DATA_DIR", str(tmp_path / "data"))
    base = ["train", "--agent", "rebrac", "--task", "cube-single-play-singletask-task2-v0", "--quiet"]
    assert cli.main([*base, "--run-dir", str(tmp_path / "a")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("flowkit: error: alpha_actor, alpha_critic:"), error
    assert not (tmp_path / "a").exists()
    fbrac = ["train", "--agent", "fbrac", "--task", "puzzle-3x3-play-singletask-v0", "--run-dir", str(tmp_path / "b")]
    assert cli.main(fbrac) == 2 and "flowkit: error: alpha:" in capsys.readouterr().err
    assert cli.main([*base, "--run-dir", str(tmp_path / "c"), "--set", "alpha_actor=0.1", "alpha_critic=0.01"]) == 2
    error = capsys.readouterr().err
    assert "flowkit: error: dataset file" in error and "does not exist" in error, error


def test_report_settings_list_each_value_with_its_source():
    """The report's settings section groups the first cell's settings by source: the study's own, the method's
    paper, the task family's kit choices."""
    study = load_study("bptt-gradients-ogbench-cpu")
    report = SimpleNamespace(study=study, results={}, created="today")
    items = FirstCellSettings().build(report).parts[0].items
    assert any(item.startswith("study: bptt-gradients-ogbench-cpu: ") and "`alpha=100.0`" in item for item in items), (
        items
    )
    assert any(item.startswith("paper: chongyi-zheng/value-flows") and "`normalize_q_loss=False`" in item
               for item in items), items  # fmt: skip
