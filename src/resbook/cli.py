"""The ``resbook`` command: ``resbook info``, ``fetch NAME``, ``check-data PATH``, ``predict MODEL PHOTO...``.

Each command imports what it needs when it runs, so ``resbook info`` loads no framework.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import ResbookError, reason


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


def _photos(given: list[str]) -> list[Path | ResbookError]:
    """Each argument as itself when it is not a folder, else its images (and those one folder down), sorted.

    A missing path, or a folder that cannot be read or holds no images, is
    replaced by the error that says so.
    """
    from .data.folders import IMAGE_SUFFIXES
    photos: list[Path | ResbookError] = []
    for arg in given:
        folder = Path(arg)
        if not folder.exists():
            photos.append(ResbookError(f"Photo {folder} does not exist: check the path."))
            continue
        if not folder.is_dir():
            photos.append(folder)
            continue
        try:
            found = sorted(f for pattern in ("*", "*/*") for f in folder.glob(pattern)
                           if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(folder).parts))
        except OSError as exc:
            photos.append(ResbookError(f"Folder {folder} cannot be read ({reason(exc)}): fix its permissions."))
            continue
        photos += found or [ResbookError(f"Folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}), "
                                         "not even one folder down: give image files or a folder of them.")]
    return photos


def _predict(args: argparse.Namespace) -> int:
    """One line per photo, its ``--top`` classes with probabilities; exit 1 only if no photo could be classified."""
    if args.top < 1:
        raise ResbookError(f"--top {args.top} shows no class: give a number of classes of 1 or more, e.g. --top 3.")
    photos = _photos(args.photos)
    from .train.keras_fit import load_classifier, predict_image_file
    model, class_names, size = load_classifier(args.model)
    classified = 0
    for photo in photos:
        try:
            if isinstance(photo, ResbookError):  # a missing path, a folder without images
                raise photo
            ranked = predict_image_file(model, photo, class_names, size)[:args.top]
        except ResbookError as exc:  # this photo is reported, the others go on
            print(f"resbook: {exc}", file=sys.stderr)
            continue
        print(f"{photo}: " + ", ".join(f"{name} {p:.1%}" for name, p in ranked), flush=True)
        classified += 1
    return 0 if classified else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resbook", description="Helpers for the ResNet Hands-On book.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the profile, data, device and versions a run would use")
    info.set_defaults(func=_info)
    fetch = sub.add_parser("fetch", help="download, verify and extract a dataset; print its path")
    fetch.add_argument("name", help="what to fetch, e.g. tf_flowers, mnist, oxford102 (a wrong name lists them)")
    fetch.add_argument("--dest", help="the folder to put it in (default: the cache, $RESBOOK_CACHE/NAME)")
    fetch.set_defaults(func=_fetch)
    check = sub.add_parser("check-data", help="check an image folder (one subfolder per class) and report on it")
    check.add_argument("path", help="the folder that holds one subfolder per class")
    check.set_defaults(func=_check_data)
    predict = sub.add_parser("predict", help="classify photos with a model saved by keras_fit.save_classifier: "
                                             "each photo's most likely classes with their probabilities")
    predict.add_argument("model", help="the .keras file (its class names are in MODEL.classes.json beside it)")
    predict.add_argument("photos", nargs="+", metavar="photo",
                         help="an image file, or a folder: its images and those one folder down, sorted")
    predict.add_argument("--top", type=int, default=3, metavar="K", help="how many classes to show (default 3)")
    predict.set_defaults(func=_predict)
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
