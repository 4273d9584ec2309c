"""The compiled Winograd transforms (``kernels/winograd.c``): built on first use, cached, optional.

The kernels are plain C (no Python or PyTorch headers), compiled for the CPU they run on
(``-march=native``) with the system C compiler and loaded with :mod:`ctypes`; they share PyTorch's
OpenMP runtime, so ``torch.set_num_threads`` governs them too. The shared object is cached under
``$WFVAE_CACHE_DIR`` (default ``~/.cache/wfvae``) keyed by the source, the compiler and the CPU, so
machines that share a home directory each get their own build. Without a compiler (or with
``WFVAE_NATIVE=0``) :func:`library` returns ``None`` and the model runs the framework's direct
convolution: the official speed, never a failure.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = "winograd.c"
FLAGS = ("-O3", "-march=native", "-std=c11", "-fPIC", "-shared", "-fopenmp")

_P, _I, _L, _F = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_float
SIGNATURES = {
    "wf_filter_transform": [_P, _I, _I, _I, _P],
    "wf_input_transform": [_P, _I, _I, _I, _I, _I, _I, _P, _P, _F, _P, _L],
    "wf_output_transform": [_P, _I, _I, _I, _I, _P, _I, _I, _L, _I, _P, _I],
}
SIGNATURES.update({name.replace("wf_", "wf4_"): args for name, args in SIGNATURES.items()})  # F(4x4, 3x3)


def cache_dir() -> Path:
    return Path(os.environ.get("WFVAE_CACHE_DIR") or Path.home() / ".cache" / "wfvae")


def machine_key() -> str:
    """A short key for what compiled code and measured choices depend on: this CPU and this torch."""
    import torch

    return hashlib.sha256(f"{platform.machine()}\0{_cpu_id()}\0{torch.__version__}".encode()).hexdigest()[:16]


def _cpu_id() -> str:
    """What ``-march=native`` depends on: the CPU model and its feature flags."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(sorted(set(lines)))


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")


def _build(source: str, compiler: str, target: Path) -> None:
    """Compile to a temporary file beside ``target``, then rename it into place (atomic: processes
    that build concurrently, like Ray workers on one node, never load a half-written library)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src, out = Path(tmp) / SOURCE, Path(tmp) / target.name
        src.write_text(source)
        subprocess.run([compiler, *FLAGS, str(src), "-o", str(out)], check=True, capture_output=True, text=True, timeout=300)
        os.replace(out, target)


@cache
def _mkl_free_buffers():
    """MKL's ``mkl_free_buffers`` as exported by PyTorch's CPU library, or None (no MKL)."""
    import torch

    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        fn = lib.mkl_serv_free_buffers
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [], None
    return fn


def release_gemm_buffers() -> None:
    """Return the packing buffers MKL keeps after its matrix products (per thread, per size class: tens
    of MB after a layer's products, never released otherwise) to the allocator. Called after each
    Winograd layer, the next layer's products reuse that memory instead of adding their own."""
    fn = _mkl_free_buffers()
    if fn is not None:
        fn()


@cache
def library() -> ctypes.CDLL | None:
    """The loaded kernels, or ``None`` when they cannot be built here (no compiler: logged at INFO; a
    compiler that fails: a warning)."""
    if os.environ.get("WFVAE_NATIVE", "1") == "0":
        return None
    compiler = _compiler()
    if compiler is None:
        log.info("no C compiler found: Winograd convolutions disabled (set CC to enable)")
        return None
    source = (resources.files("wfvae_cli.model.fastconv") / "kernels" / SOURCE).read_text()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([source, compiler, version, " ".join(FLAGS), _cpu_id()]).encode()).hexdigest()
    target = cache_dir() / f"winograd-{platform.machine()}-{key[:16]}.so"
    try:
        if not target.exists():
            log.info("building the Winograd kernels with %s into %s (once per CPU)", compiler, target)
            _build(source, compiler, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as exc:  # a compiler that fails is worth saying out loud
        detail = (getattr(exc, "stderr", "") or str(exc)).strip().splitlines()[-1:] or [""]
        log.warning(
            "could not build the Winograd kernels with %s (%s): using direct convolutions, at the official "
            "speed; set CC to a working C compiler, or WFVAE_NATIVE=0 to skip the attempt", compiler, detail[0]
        )
        return None
    for name, argtypes in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, None
    return lib
