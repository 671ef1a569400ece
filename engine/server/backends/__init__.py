"""How each kind of run is started, steered and ended: a ``RunBackend`` per kind.

``base`` holds the contract, ``worker``, ``attached`` and ``wrapped`` the kinds,
and ``registry`` the one mapping from a stored run to its backend.
"""

from engine.server.backends.base import (
    Host,
    KillStep,
    Process,
    RunBackend,
    RunKind,
    ShimProcess,
)
from engine.server.backends.registry import backend_for, kind_fields

__all__ = ["Host", "KillStep", "Process", "RunBackend", "RunKind", "ShimProcess", "backend_for",
           "kind_fields"]
