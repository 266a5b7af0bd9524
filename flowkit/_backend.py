"""Keras backend selection (flowkit's models and training loops are written for Keras on JAX only) and the
persistent compilation cache that lets a study pay each shape's compilation once."""

import contextlib
import functools
import hashlib
import os
import pickle
import platform
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class BackendError(RuntimeError):
    """Keras is (or is about to be) running on a backend other than JAX."""


def select_jax_backend() -> None:
    """Make Keras use JAX; must run before the first ``import keras`` to take effect."""
    requested = os.environ.get("KERAS_BACKEND", "")
    if requested not in ("", "jax"):
        raise BackendError(
            f"KERAS_BACKEND={requested!r} is set, but flowkit runs Keras on the JAX backend only: "
            "unset KERAS_BACKEND or set it to 'jax'."
        )
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != "jax":
        raise BackendError(
            f"Keras was imported before flowkit with the {keras.backend.backend()!r} backend, but flowkit "
            "needs 'jax': import flowkit before keras, or set KERAS_BACKEND=jax."
        )
    os.environ["KERAS_BACKEND"] = "jax"


COMPILATION_CACHE_ENV = "FLOWKIT_COMPILATION_CACHE"
CACHE_MIN_COMPILE_S = 0.1
"""Programs that compile faster than this (Keras' and jnp's small eager operations) get no cache entry."""


def device_memory_bytes() -> tuple[str, int]:
    """The default device's name and the memory a program may take on it: the accelerator's allocator limit, or
    the host's physical memory on a CPU."""
    import jax

    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        return device.device_kind, int(stats["bytes_limit"])
    return "CPU host", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def compilation_cache_dir() -> Path | None:
    """The folder of compiled programs kept between processes: $FLOWKIT_COMPILATION_CACHE, None if it is
    'off', else $XDG_CACHE_HOME/flowkit/jax (~/.cache/flowkit/jax)."""
    setting = os.environ.get(COMPILATION_CACHE_ENV, "").strip()
    if setting.lower() == "off":
        return None
    if setting:
        return Path(setting).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flowkit" / "jax"


def use_compilation_cache() -> Path | None:
    """Point JAX's persistent compilation cache at compilation_cache_dir(), so that a program compiled before
    with the same shapes (evaluation, acting) is loaded instead of compiled; training chunks are kept as
    executables there instead (stored_executable)."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    folder = compilation_cache_dir()
    path = None if folder is None else str(folder)
    if jax.config.jax_compilation_cache_dir != path:
        jax.config.update("jax_compilation_cache_dir", path)
        compilation_cache.reset_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_S)
    return folder


STORED_EXECUTABLES_KEPT = 64
"""Executables the cache folder keeps (the least recently used go first); 2.6 MB each for the default study's."""


def stored_executable(key: str, compile_: Callable[[], Any]) -> Any:
    """The executable stored under `key` in the cache folder's `executables/`, else `compile_()`, then stored.

    JAX's cache keys its entries by the lowered program, so a fresh process still traces the Keras models to find
    one; this store keys them by what the traced program depends on (`key`: the program and its arguments'
    shapes) and by code_fingerprint(), and so skips tracing. Processes that need the same program take turns:
    one compiles it, the others wait and load it. What it keeps is compiled without JAX's cache. Code patched
    in a running process is not in the fingerprint: run such code with the cache 'off'. An entry that cannot
    be read is compiled again and replaced.
    """
    from flowkit import runs

    folder = compilation_cache_dir()
    if folder is None:
        return compile_()
    digest = hashlib.sha256(f"{key}\n{code_fingerprint()}".encode()).hexdigest()
    path = folder / "executables" / f"{digest}.pickle"
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
    writable = os.access(path.parent, os.W_OK)
    with runs.exclusive_lock(path.with_suffix(".lock")) if writable else contextlib.nullcontext():
        return _load_or_compile(path, compile_, store=writable)


def _load_or_compile(path: Path, compile_: Callable[[], Any], *, store: bool) -> Any:
    from jax.experimental import serialize_executable

    from flowkit import runs

    if path.exists():
        try:
            executable = serialize_executable.deserialize_and_load(*pickle.loads(path.read_bytes()))
        except Exception as error:  # whatever is wrong with the entry, compiling again replaces it
            warnings.warn(f"could not load the stored executable {path} ({error}); compiling again", stacklevel=3)
        else:
            with contextlib.suppress(OSError):
                os.utime(path)  # recently used
            return executable
    with _jax_cache_left_out() if store else contextlib.nullcontext():
        executable = compile_()
    if not store:
        return executable
    try:
        payload = serialize_executable.serialize(executable)
    except (ValueError, NotImplementedError):  # programs with constants or mutable state cannot be stored
        return executable
    try:
        runs.write_atomic(path, pickle.dumps(payload))
    except OSError as error:
        warnings.warn(f"could not store the executable in {path.parent} ({error}); training goes on", stacklevel=3)
        return executable
    _drop_least_recently_used(path.parent)
    return executable


@contextlib.contextmanager
def _jax_cache_left_out() -> Iterator[None]:
    """Compile without JAX's persistent cache: XLA:CPU serialises an executable that it loaded from there without
    some of its kernels (the copy fails with "Function ... not found"), so what the store keeps is compiled."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    folder = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    compilation_cache.reset_cache()
    try:
        yield
    finally:
        jax.config.update("jax_compilation_cache_dir", folder)
        compilation_cache.reset_cache()


def _drop_least_recently_used(folder: Path) -> None:
    """Keep the STORED_EXECUTABLES_KEPT entries last stored or loaded: entries for code since changed go first."""
    entries = []
    for entry in folder.glob("*.pickle"):
        with contextlib.suppress(FileNotFoundError):  # removed by another worker meanwhile
            entries.append((entry.stat().st_mtime, entry))
    for _, stale in sorted(entries, reverse=True)[STORED_EXECUTABLES_KEPT:]:
        with contextlib.suppress(OSError):  # another user's entry in a shared folder stays
            stale.unlink(missing_ok=True)
            stale.with_suffix(".lock").unlink(missing_ok=True)


def code_fingerprint() -> str:
    """What a traced program depends on besides its arguments: flowkit's source, the versions of Python, JAX,
    jaxlib, Keras and NumPy, JAX's and Keras' settings, XLA's flags, and the devices and CPU it compiles for."""
    import jax
    import jaxlib
    import keras
    import numpy

    device = jax.devices()[0]
    return "\n".join(
        (
            FLOWKIT_SOURCE,
            repr((sys.version, jax.__version__, jaxlib.__version__, keras.__version__, numpy.__version__)),
            repr(sorted((name, repr(value)) for name, value in jax.config.values.items())),
            repr((keras.config.floatx(), keras.config.epsilon(), keras.config.dtype_policy().name)),
            os.environ.get("XLA_FLAGS", ""),
            repr((device.platform, device.device_kind, device.client.platform_version, jax.device_count())),
            _host_cpu(),
        )
    )


@functools.cache
def _host_cpu() -> str:
    """The CPU's model and features: XLA:CPU compiles for the instruction set of the machine it runs on."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))
    return f"{platform.machine()} {platform.processor()}"


def source_digest(package: Path) -> str:
    """A hash of the Python files under `package`, names and contents."""
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(str(source.relative_to(package)).encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


FLOWKIT_SOURCE = source_digest(Path(__file__).parent)
"""flowkit's source as this process imports it: read at import, so that files edited later do not count."""
