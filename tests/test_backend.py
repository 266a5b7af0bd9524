"""flowkit runs Keras on JAX, and says so clearly when another backend is already active; compiled programs
are kept in a cache folder that the user can move or turn off."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import flowkit
from flowkit._backend import (
    COMPILATION_CACHE_ENV,
    code_fingerprint,
    compilation_cache_dir,
    source_digest,
    use_compilation_cache,
)


def run_python(code: str, **environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in __import__("os").environ.items() if key != "KERAS_BACKEND"}
    env.update(environment)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_importing_flowkit_selects_jax():
    result = run_python("import flowkit, keras; print(keras.backend.backend())")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "jax"


def test_another_backend_in_the_environment_is_refused():
    result = run_python("import flowkit", KERAS_BACKEND="torch")
    assert result.returncode != 0
    assert "KERAS_BACKEND='torch' is set, but flowkit runs Keras on the JAX backend only" in result.stderr


@pytest.mark.slow
def test_keras_already_running_on_another_backend_is_refused():
    code = "import os, keras; os.environ.pop('KERAS_BACKEND'); import flowkit"
    result = run_python(code, KERAS_BACKEND="numpy")
    assert result.returncode != 0
    assert "Keras was imported before flowkit with the 'numpy' backend" in result.stderr


def test_compilation_cache_folder_defaults_to_the_user_cache_and_can_be_moved_or_turned_off(monkeypatch, tmp_path):
    monkeypatch.delenv(COMPILATION_CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compilation_cache_dir() == tmp_path / "xdg" / "flowkit" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert compilation_cache_dir() == Path.home() / ".cache" / "flowkit" / "jax"
    monkeypatch.setenv(COMPILATION_CACHE_ENV, str(tmp_path / "mine"))
    assert use_compilation_cache() == tmp_path / "mine"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    monkeypatch.setenv(COMPILATION_CACHE_ENV, "off")
    assert use_compilation_cache() is None and jax.config.jax_compilation_cache_dir is None
    monkeypatch.undo()
    use_compilation_cache()


def test_stored_executables_are_keyed_by_the_code_the_process_imported(tmp_path, monkeypatch):
    """A one-character edit or a new file in the package changes its digest. A process's flowkit digest is the
    one of the files it imported, not of the files as they are later. XLA's flags and JAX's settings are in
    the key too."""
    package = tmp_path / "copy" / "flowkit"
    shutil.copytree(Path(flowkit.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    original = source_digest(package)
    spec = importlib.util.spec_from_file_location("copied_backend", package / "_backend.py")
    copied_backend = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copied_backend)  # the copy's import computes its digest
    fql = package / "agents" / "fql.py"
    fql.write_text(fql.read_text().replace("alpha", "alphb", 1))
    assert original == copied_backend.FLOWKIT_SOURCE
    edited = source_digest(package)
    (package / "agents" / "extra.py").write_text("")
    assert len({original, edited, source_digest(package)}) == 3

    fingerprint = code_fingerprint()
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    assert code_fingerprint() != fingerprint
    monkeypatch.undo()
    with jax.default_matmul_precision("highest"):
        assert code_fingerprint() != fingerprint
    assert code_fingerprint() == fingerprint
