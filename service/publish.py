"""``latentwatch publish``: put a bundle into a model repository in one step.

A running server scans its repository while files are copied into it; a plain ``cp -r``
shows it a version whose files are partial or missing. :func:`publish` copies the bundle
into a hidden staging directory beside the destination (the registry skips names starting
with ``.``), verifies the copy as the server will (manifest, digests, integrity record), and
renames it into place: one ``rename`` on one file system, so the server sees either no
version or the whole one. By hand, the same is ``cp -r BUNDLE DIR/.VERSION`` then
``mv DIR/.VERSION DIR/VERSION``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import uuid
from pathlib import Path

from service.bundle import load_bundle
from service.errors import InvalidInput


def publish(bundle: str | os.PathLike[str], destination: str | os.PathLike[str]) -> Path:
    """Copy ``bundle`` to ``destination`` (``DIR/<model>/<version>``) atomically; return it.

    Raises:
        BundleError: the bundle, or its copy, does not verify (nothing is published).
        InvalidInput: ``destination`` exists already (a version is never changed in place:
            publish a new version).
    """
    source, target = Path(bundle), Path(destination)
    load_bundle(source)
    if target.exists():
        msg = f"{target} exists already; publish the bundle as a new version instead of changing this one"
        raise InvalidInput(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.publishing-{uuid.uuid4().hex[:8]}"
    staging.mkdir()  # with the umask's permissions, which the published version keeps
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        load_bundle(staging)
        staging.rename(target)  # fails rather than merge if target appeared meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    """``publish``'s arguments."""
    parser.add_argument("bundle", help="bundle folder to publish")
    parser.add_argument("destination", help="where it goes in the model repository: DIR/<model>/<version>")


def publish_command(args: argparse.Namespace) -> int:
    """Run ``latentwatch publish``; return the exit status."""
    target = publish(args.bundle, args.destination)
    print(f"published {args.bundle} as {target}")
    return 0
