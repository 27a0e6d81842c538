"""The ``resbook`` command: ``resbook info`` (later: fetch, check-data, bench)."""

from __future__ import annotations

import argparse
import sys

from .errors import ResbookError


def _info(args: argparse.Namespace) -> int:
    from . import settings
    settings.describe_run("resbook info", data=f"RESBOOK_DATA={settings.data_root() or '(not set)'}, "
                                               f"cache {settings.cache_dir()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resbook", description="Helpers for the ResNet Hands-On book.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the profile, data, device and versions a run would use")
    info.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ResbookError as exc:
        print(f"resbook: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
