"""Test set-up: one XLA thread per pytest worker (workers run in parallel), compiled programs cached in a
temporary folder (not the user's), JAX selected for Keras."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ["FLOWKIT_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="flowkit-test-compilation-cache-")
atexit.register(shutil.rmtree, os.environ["FLOWKIT_COMPILATION_CACHE"], ignore_errors=True)

import pytest  # noqa: E402

import flowkit  # noqa: E402, F401  (selects the JAX backend before anything imports keras)
from flowkit._backend import COMPILATION_CACHE_ENV, use_compilation_cache  # noqa: E402
from flowkit.training import forget_compiled_chunks  # noqa: E402


@pytest.fixture
def patched_agent_code(monkeypatch):
    """For tests that monkeypatch an agent's code: the process's kept training chunks, traced from the code as it
    was, are dropped before the test and again after it, and the cache folder is off during it (its stored
    executables are keyed by the code's files), so that neither side runs the other's program."""
    forget_compiled_chunks()
    monkeypatch.setenv(COMPILATION_CACHE_ENV, "off")
    yield
    monkeypatch.undo()
    forget_compiled_chunks()
    use_compilation_cache()
