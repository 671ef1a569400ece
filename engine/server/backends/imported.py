"""A run imported from TensorBoard logs (``traintop import DIR``): points, no process.

Its workload string is ``import:`` plus the directory it came from. The daemon takes
it in like an offline ``traintop.init`` run (its directory holds a spool and an
exit.json from the start), so it is followed once, ends finished, and from then on
there is nothing to pause, fork, release or restart.
"""

from __future__ import annotations

from typing import ClassVar

from engine.server.backends.attached import AttachedBackend
from engine.server.backends.base import Refusable, RunKind

IMPORT_PREFIX = "import:"


def import_workload(source: str) -> str:
    """The workload string of a run imported from the directory ``source``."""
    return IMPORT_PREFIX + source


def is_import_workload(workload: str) -> bool:
    """Does ``workload`` name an imported run?"""
    return workload.startswith(IMPORT_PREFIX)


class ImportedBackend(AttachedBackend):
    """Followed like an attached run while its spool is read; refuses anything else."""

    kind: ClassVar[RunKind] = "imported"

    def followed_reason(self, pid: int) -> str:
        """No process of its own: the daemon reads the points it was given."""
        return "reading its points"

    def refusal(self, action: Refusable, run_id: str) -> str | None:
        """Every action: there is no script to run again."""
        return (f"run {run_id} was imported from TensorBoard logs: there is no command "
                f"to {action}")
