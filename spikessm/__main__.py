"""Command line: `spikessm <command>` or `python -m spikessm <command>`."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spikessm", description="Spiking state-space models for long sequences.")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("check", help="verify the ops on this machine against float64 references and time them")
    args = parser.parse_args(argv)
    if args.command in (None, "check"):
        from .selfcheck import run_check

        return 0 if run_check() else 1
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
