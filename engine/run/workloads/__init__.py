"""Built-in workloads and the registry that finds any workload by spec (torch-free)."""

from engine.run.workloads.registry import (
    BUILTIN_DEFAULTS,
    WorkloadError,
    load_train,
    normalize_spec,
    workload_defaults,
)

__all__ = [
    "BUILTIN_DEFAULTS",
    "WorkloadError",
    "load_train",
    "normalize_spec",
    "workload_defaults",
]
