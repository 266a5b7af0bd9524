"""The methods, one file each, behind the interface in flowkit.agents.base."""

from flowkit.agents.base import Agent, TrainState
from flowkit.agents.flow_bc import FlowBC
from flowkit.agents.fql import FQL
from flowkit.config import RunConfig, check_agent

AGENTS: dict[str, type[Agent]] = {cls.name: cls for cls in (FQL, FlowBC)}


def make_agent(config: RunConfig, obs_dim: int, action_dim: int) -> Agent:
    check_agent(config.agent)
    return AGENTS[config.agent](config.agent_config, obs_dim, action_dim)


__all__ = ["AGENTS", "Agent", "TrainState", "make_agent"]
