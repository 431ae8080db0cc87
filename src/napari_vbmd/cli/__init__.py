"""`vbmd`: the command line over the engine.

Each sub-command lives in a module of this package that defines ``register(subparsers)``; the
module's ``register`` adds a parser whose ``func(args) -> int`` runs the command. Modules are
found by name, so adding a command means adding a module.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..errors import CancelledError, VbmdError

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran but some work failed (e.g. a batch with failed cases)
EXIT_BAD_INPUT = 2


def command_names() -> list[str]:
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of command ``only`` alone: a command imports nothing of the
    others (``vbmd segment`` does not load what ``vbmd agreement`` needs)."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="vbmd",
        description="Volumetric bone mineral density of the second metacarpal in HR-pQCT scans.",
    )
    parser.add_argument("--version", action="version", version=f"napari-vbmd {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_names():
        if only is not None and name != only:
            continue
        module = importlib.import_module(f"{__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=argv[0] if argv and argv[0] in command_names() else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    import os
    import warnings

    try:
        with warnings.catch_warnings():
            if not os.environ.get("VBMD_DEBUG"):
                # libraries' warnings about the input (pydicom's "invalid value for VR DS", numpy's
                # overflow) are not for the user: the checks here turn what matters into one line
                warnings.simplefilter("ignore")
            return int(args.func(args) or 0)
    except VbmdError as exc:
        print(f"vbmd {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # e.g. `vbmd info X --json | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except CancelledError:
        print(f"vbmd {args.command}: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"vbmd {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"vbmd {args.command}: error: out of memory", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # one line, never a traceback; VBMD_DEBUG=1 shows it
        if os.environ.get("VBMD_DEBUG"):
            raise
        print(f"vbmd {args.command}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
