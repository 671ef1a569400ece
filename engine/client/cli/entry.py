"""``main``: parse a ``traintop`` command line, run its command, map errors to exits.

Every user mistake ends as one line on stderr and a non-zero exit status:
2 for a malformed command line, 1 for a request the engine refused.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from engine.client.cli.common import UsageError
from engine.client.cli.parser import build_parser, take_overrides
from engine.client.client import EngineError, EngineUnavailable


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``traintop`` script."""
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        take_overrides(parser, args, extras)
        if args.command is None:
            parser.print_help()
            return 0
        result: int = args.func(args)
        return result
    except UsageError as exc:
        print(f"traintop: {exc}", file=sys.stderr)
        return 2
    except EngineError as exc:
        print(f"traintop: {exc.message}", file=sys.stderr)
        return 1
    except EngineUnavailable as exc:
        print(f"traintop: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0

