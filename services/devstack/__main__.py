"""``python -m services.devstack up|down|status [--dir .dev]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.devstack.stack import Stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.devstack")
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=Path(".dev"))
    args = parser.parse_args(argv)
    stack = Stack(args.dir)
    if args.action == "up":
        try:
            stack.up()
        except RuntimeError as error:
            print(f"dev-up: {error}; logs in {args.dir}", file=sys.stderr)
            stack.down(quiet=True)
            return 1
    elif args.action == "down":
        stack.down()
    else:
        print("running" if stack.running() else "stopped")
        return 0 if stack.running() else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
