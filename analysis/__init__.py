"""Analyses of studies and runs: statistics over seeds and tasks (more arrive with the analysis issues)."""
