"""The methods learn: every RL method clearly beats cloning the data, with the bandits' default settings.

eight-gaussians has rewards 0, 1/7, ..., 1 on eight equally likely modes, so flow behaviour cloning scores
about 0.5; in eight-gaussians-rare the best mode holds only 2% of the points and cloning scores about 0.44.
Every run has 3000 updates.
"""

from pathlib import Path

import pytest

from flowkit.run_config import make_run_config
from flowkit.training import train

pytestmark = pytest.mark.slow

TASK = "eight-gaussians-rare"
SETTINGS = {"steps": 3000, "eval_every": 3000}


@pytest.fixture(scope="module")
def behaviour_cloning(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("flow-bc")
    return train(make_run_config("flow-bc", TASK, 0, SETTINGS), run_dir, progress=False)["final"]


@pytest.mark.parametrize("agent", ["fql", "fbrac", "flowq", "qflow", "rebrac"])
def test_rl_method_beats_flow_behaviour_cloning(agent, behaviour_cloning, tmp_path: Path):
    final = train(make_run_config(agent, TASK, 0, SETTINGS), tmp_path, progress=False)["final"]
    message = (
        f"{agent}: reward {final['reward_mean']:.3f} (support {final['support']:.2f}) vs flow BC reward "
        f"{behaviour_cloning['reward_mean']:.3f} (support {behaviour_cloning['support']:.2f})"
    )
    assert 0.40 < behaviour_cloning["reward_mean"] < 0.48, message
    assert final["reward_mean"] > behaviour_cloning["reward_mean"] + 0.1, message


def test_fql_beats_flow_behaviour_cloning_on_eight_gaussians(tmp_path: Path):
    fql = train(make_run_config("fql", "eight-gaussians", 0, SETTINGS), tmp_path / "fql", progress=False)["final"]
    bc = train(make_run_config("flow-bc", "eight-gaussians", 0, SETTINGS), tmp_path / "bc", progress=False)["final"]
    message = (
        f"FQL reward {fql['reward_mean']:.3f} (support {fql['support']:.2f}) vs flow BC reward "
        f"{bc['reward_mean']:.3f} (support {bc['support']:.2f})"
    )
    assert 0.45 < bc["reward_mean"] < 0.55, message
    assert fql["reward_mean"] > bc["reward_mean"] + 0.1, message
