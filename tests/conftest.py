"""Test set-up: one XLA thread per pytest worker (workers run in parallel), JAX selected for Keras."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import flowkit  # noqa: F401  (selects the JAX backend before anything imports keras)
