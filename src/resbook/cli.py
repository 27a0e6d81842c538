"""The ``resbook`` command: ``resbook info``, ``resbook fetch NAME``, ``resbook check-data PATH``."""

from __future__ import annotations

import argparse
import sys

from .errors import ResbookError


def _info(args: argparse.Namespace) -> int:
    from . import settings
    settings.describe_run("resbook info", data=f"RESBOOK_DATA={settings.data_root() or '(not set)'}, "
                                               f"cache {settings.cache_dir()}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from .data.sources import fetch
    print(fetch(args.name, dest=args.dest, progress=sys.stderr.isatty()))
    return 0


def _check_data(args: argparse.Namespace) -> int:
    from .data.folders import index_folder
    print(index_folder(args.path, progress=sys.stderr.isatty()).report())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resbook", description="Helpers for the ResNet Hands-On book.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the profile, data, device and versions a run would use")
    info.set_defaults(func=_info)
    fetch = sub.add_parser("fetch", help="download, verify and extract a dataset or weights file; print its path")
    fetch.add_argument("name", help="what to fetch, e.g. tf_flowers, mnist, oxford102 (a wrong name lists them)")
    fetch.add_argument("--dest", help="the folder to put it in (default: the cache, $RESBOOK_CACHE/NAME)")
    fetch.set_defaults(func=_fetch)
    check = sub.add_parser("check-data", help="check an image folder (one subfolder per class) and report on it")
    check.add_argument("path", help="the folder that holds one subfolder per class")
    check.set_defaults(func=_check_data)
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
