"""traintop for an existing training loop: ``run = traintop.init(...)``.

Importing this package is cheap: torch is imported only when a checkpoint is
saved or restored.
"""

from engine.run.run_api import Run, RunConfig
from traintop.attach import init

__all__ = ["Run", "RunConfig", "init"]
