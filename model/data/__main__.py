"""``python -m model.data check --data-dir DIR``: which data sets a folder holds, and what is missing.

    python -m model.data check --data-dir "$DATA"                  # every set, checksums included
    python -m model.data check --data-dir "$DATA" --sets mnist --no-checksums

One line per data set (ok, MISSING or BAD, with the files concerned); exit code 0 when every set
asked for is complete and unaltered, 1 otherwise, 2 for a mistake in the command. docs/data.md says
where each set comes from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.cli import Parser, UsageError, run
from model.data.check import SETS, check

PROG = "python -m model.data"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog=PROG, description=__doc__.split("\n")[0])
    commands = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    c = commands.add_parser("check", help="verify a data folder against the published checksums")
    c.add_argument("--data-dir", required=True, type=Path,
                   help="the folder holding mnist/, train400/, cbsd432/, bsd68/, cbsd68/")
    c.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS),
                   help="the sets to check (default: all)")
    c.add_argument("--checksums", action=argparse.BooleanOptionalAction, default=True,
                   help="hash every file (default) or only look for the names")
    return p.parse_args(argv)


def main_check(argv: list[str] | None) -> int:
    args = parse_args(argv)
    if not args.data_dir.is_dir():
        raise UsageError(f"--data-dir {args.data_dir}: no such folder")
    reports = check(args.data_dir, args.sets, args.checksums)
    for report in reports:
        print(report.line())
    bad = [r.name for r in reports if not r.ok]
    if bad:
        print(f"{len(bad)} of {len(reports)} sets missing or incomplete in {args.data_dir}: "
              f"{', '.join(bad)} (docs/data.md says where each comes from)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(PROG, main_check, argv)


if __name__ == "__main__":
    raise SystemExit(main())
