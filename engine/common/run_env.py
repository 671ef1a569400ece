"""Which environment variables a run gets, and so which are written to ``launch.json``.

A shell's environment holds tokens and passwords that no training run needs.
A run gets what finds programs, libraries and devices, and says where it is
(locale, home, virtual environment, traintop's own settings), plus what the
user names (``traintop start --env NAME``), or everything with ``--env-all``.
The daemon itself is started with the same selection, so a run started
without an environment of its own (the TUI, the demo) inherits no more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

KEPT_NAMES = frozenset(
    {
        "PATH", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV",
        "LD_LIBRARY_PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TMPDIR",
        "LANG", "LANGUAGE", "TZ",
    }
)
# Prefixes of families a run may need: devices and their libraries, thread pools,
# the interpreter's own settings (PYTHONHASHSEED decides reproducibility), locale.
KEPT_PREFIXES = (
    "CUDA_", "NVIDIA_", "NCCL_", "CUBLAS_", "CUDNN_", "ROCR_", "HIP_", "OMP_", "MKL_",
    "OPENBLAS_", "TORCH_", "PYTHON", "LC_", "TRAINTOP_", "XDG_",
)


def kept(name: str) -> bool:
    """Whether a run gets ``name`` without being asked."""
    return name in KEPT_NAMES or name.startswith(KEPT_PREFIXES)


def run_env(
    environ: Mapping[str, str], names: Iterable[str] = (), everything: bool = False
) -> dict[str, str]:
    """The part of ``environ`` a run gets: the kept variables and ``names``, or all of it."""
    if everything:
        return dict(environ)
    wanted = set(names)
    return {k: v for k, v in environ.items() if kept(k) or k in wanted}
