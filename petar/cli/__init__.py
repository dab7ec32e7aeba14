"""`petar` command line: subcommands, exit codes (0 ok, 2 bad input, 3 model missing, 1 internal error)."""
from __future__ import annotations

import logging
import os
import sys

from .. import __version__
from ..errors import PetarError
from .commands import ADDERS
from .parser import Parser, join_negative_values


def build_parser() -> Parser:
    parser = Parser(prog="petar", description="PET/CT findings: measure, click-segment and report lesions "
                                              "(SlicerPETAR core). Each command has --help.")
    parser.add_argument("--version", action="version", version=f"petar {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for add in ADDERS:
        add(sub)
    return parser


def main(argv=None) -> int:
    argv = join_negative_values(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except PetarError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except Exception as exc:  # an internal bug: short message, traceback only on request
        if os.environ.get("PETAR_DEBUG"):
            raise
        sys.stderr.write(f"error: internal error ({type(exc).__name__}: {exc}); rerun with PETAR_DEBUG=1 for the "
                         "traceback and report it\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
