"""Benchmarks beyond `flowkit bench`: the hand-written reference FQL update, a trial's overhead, runner load."""
