"""The command palette, fed from the same registry as keys and help."""

from __future__ import annotations

from textual.command import Hit, Hits, Provider

from tui.keys import ACTIONS


class ActionCommands(Provider):
    """Every action of ``tui.keys`` as a palette command."""

    async def search(self, query: str) -> Hits:
        """The actions whose label or description match ``query``, best first."""
        app = self.app
        matcher = self.matcher(query)
        for action in ACTIONS:
            score = matcher.match(f"{action.label} {action.description}")
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(action.description),
                    lambda a=action.id: app.run_action(a),
                    help=action.label,
                )
