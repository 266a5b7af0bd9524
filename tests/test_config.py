"""Settings are refused with a message naming the setting, what was wrong and what is allowed."""

from pathlib import Path

import pytest

from flowkit.agents import AGENT_CONFIGS
from flowkit.run_config import make_run_config, parse_overrides, setting_names
from flowkit.settings import ConfigError, TrainConfig
from flowkit.tasks import defaults_markdown, task_families


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
        for where, agent, settings in family.defaults_table():
            assert agent == "*" or agent in AGENT_CONFIGS, (where, agent)
            agents = AGENT_CONFIGS if agent == "*" else [agent]
            for name in settings:
                assert any(name in setting_names(a) for a in agents), (where, agent, name)


def test_docs_list_the_task_families_declared_defaults():
    """docs/methods.md's defaults table is the one the task classes declare (regenerate it with
    flowkit.tasks.defaults_markdown() after changing a declaration)."""
    text = (Path(__file__).parents[1] / "docs" / "methods.md").read_text()
    start = text.index("-->\n", text.index("<!-- defaults-table")) + len("-->\n")
    documented = text[start : text.index("<!-- end defaults-table -->")].strip()
    assert documented == defaults_markdown(), f"docs/methods.md:\n{documented}\ndeclared:\n{defaults_markdown()}"
