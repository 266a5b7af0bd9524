"""The methods, one file each, behind the interface in flowkit.agents.base; adding a method is one file plus one
line in AGENTS."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkit.agents.base import Agent, AgentConfig, CriticConfig, FlowConfig, TrainState
from flowkit.agents.distill_bc import DistillBC
from flowkit.agents.fbrac import FBRAC
from flowkit.agents.flow_bc import FlowBC
from flowkit.agents.flowq import FlowQ
from flowkit.agents.fql import FQL
from flowkit.agents.gaussian_bc import GaussianBC
from flowkit.agents.ifql import IFQL
from flowkit.agents.qflow import QFlow
from flowkit.agents.rebrac import ReBRAC

if TYPE_CHECKING:
    from flowkit.run_config import RunConfig

AGENTS: dict[str, type[Agent]] = {
    cls.name: cls for cls in (FQL, FBRAC, FlowQ, QFlow, IFQL, FlowBC, DistillBC, GaussianBC, ReBRAC)
}

AGENT_CONFIGS: dict[str, type[AgentConfig]] = {name: cls.config_class for name, cls in AGENTS.items()}
"""Each method's settings class, by the method's name."""

FLOW_AGENTS = tuple(name for name, config in AGENT_CONFIGS.items() if issubclass(config, FlowConfig))
"""The methods with a flow policy, to which the solver and flow-step settings apply."""


def make_agent(config: RunConfig, obs_dim: int, action_dim: int) -> Agent:
    """The run's method with its settings, for the task's dimensions."""
    return AGENTS[config.agent](config.agent_config, obs_dim, action_dim)


__all__ = [
    "AGENTS",
    "AGENT_CONFIGS",
    "FLOW_AGENTS",
    "Agent",
    "AgentConfig",
    "CriticConfig",
    "FlowConfig",
    "TrainState",
    "make_agent",
]
