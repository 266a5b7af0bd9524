"""The methods, one file each, behind the interface in flowkit.agents.base."""

from flowkit.agents.base import Agent, TrainState
from flowkit.agents.distill_bc import DistillBC
from flowkit.agents.fbrac import FBRAC
from flowkit.agents.flow_bc import FlowBC
from flowkit.agents.flowq import FlowQ
from flowkit.agents.fql import FQL
from flowkit.agents.gaussian_bc import GaussianBC
from flowkit.agents.qflow import QFlow
from flowkit.agents.rebrac import ReBRAC
from flowkit.config import AGENT_CONFIGS, RunConfig, check_agent

AGENTS: dict[str, type[Agent]] = {
    cls.name: cls for cls in (FQL, FBRAC, FlowQ, QFlow, FlowBC, DistillBC, GaussianBC, ReBRAC)
}
assert AGENTS.keys() == AGENT_CONFIGS.keys(), "every method has its settings in flowkit.config"


def make_agent(config: RunConfig, obs_dim: int, action_dim: int) -> Agent:
    check_agent(config.agent)
    return AGENTS[config.agent](config.agent_config, obs_dim, action_dim)


__all__ = ["AGENTS", "Agent", "TrainState", "make_agent"]
