"""Analyses of studies and runs: statistics over seeds and tasks, cost fits, gradient norms, value consistency."""
