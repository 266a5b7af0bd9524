"""Every benchmark: `flowkit bench` (bench.py), the reference FQL update, a trial's overhead, runner load."""
