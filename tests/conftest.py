"""Test set-up: one XLA thread per pytest worker (workers run in parallel), compiled programs cached in a
temporary folder (not the user's), JAX selected for Keras."""

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

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


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture
def postgres_url():
    """A PostgreSQL server on loopback for this test only (Debian's postgresql package; .ci/run installs it)."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("needs Debian's postgresql package (.ci/run installs it)")
    data = Path(tempfile.mkdtemp(prefix="flowkit-pg-"))
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_owner:
        shutil.chown(data, "postgres")
    port = 20000 + os.getpid() % 10000
    subprocess.run([*as_owner, bin_dir / "initdb", "-D", data / "db", "-A", "trust", "-U", "flowkit"], check=True,
                   capture_output=True)  # fmt: skip
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=400"  # the tests share one server
    subprocess.run([*as_owner, bin_dir / "pg_ctl", "-D", data / "db", "-o", options, "-l", data / "log", "-w", "start"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        subprocess.run([bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "flowkit", "studies"],
                       check=True, capture_output=True)  # fmt: skip
        yield f"postgresql://flowkit@127.0.0.1:{port}/studies"
    finally:
        subprocess.run(
            [*as_owner, bin_dir / "pg_ctl", "-D", data / "db", "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(data, ignore_errors=True)
