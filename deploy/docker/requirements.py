"""Print the Python requirements of one latentwatch image, taken from pyproject.toml.

    python deploy/docker/requirements.py cpu|cuda|train [--onnxruntime SPEC] [--pyproject FILE]

The base dependencies of pyproject.toml pick ``onnxruntime-gpu`` on Linux x86-64 and
``onnxruntime`` elsewhere. An image knows which one it wants: ``cpu`` and ``train`` take
the CPU build (small, no CUDA libraries), ``cuda`` the GPU build, each at the version
``--onnxruntime`` pins (the CUDA build must match the CUDA major version of the base
image). ``train`` adds the ``train`` extra. The other requirements are printed as written,
so the images follow pyproject.toml without a second list to keep in step.

Standard library only: it runs in the images' build stage before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

FLAVORS = ("cpu", "cuda", "train")
ONNXRUNTIME_NAMES = ("onnxruntime", "onnxruntime-gpu")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(requirement: str) -> str:
    """The normalized project name of a PEP 508 requirement (``Foo_Bar>=1`` -> ``foo-bar``)."""
    match = _NAME.match(requirement)
    if match is None:
        msg = f"cannot read a project name in requirement {requirement!r}"
        raise ValueError(msg)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _without_marker(requirement: str) -> str:
    return requirement.split(";", 1)[0].strip()


def image_requirements(pyproject: dict, flavor: str, onnxruntime: str | None = None) -> list[str]:
    """The requirement lines of the ``flavor`` image (see the module docstring).

    Args:
        pyproject: the parsed pyproject.toml.
        flavor: ``cpu``, ``cuda`` or ``train``.
        onnxruntime: the onnxruntime requirement to use; default: pyproject's own
            specifier for the flavor's build, without its platform marker.
    """
    if flavor not in FLAVORS:
        msg = f"flavor must be one of {list(FLAVORS)}, got {flavor!r}"
        raise ValueError(msg)
    project = pyproject["project"]
    wanted = "onnxruntime-gpu" if flavor == "cuda" else "onnxruntime"
    lines: list[str] = []
    chosen = onnxruntime
    for requirement in project["dependencies"]:
        name = requirement_name(requirement)
        if name in ONNXRUNTIME_NAMES:
            if name == wanted and chosen is None:
                chosen = _without_marker(requirement)
            continue
        lines.append(requirement)
    if chosen is None:
        msg = f"pyproject.toml declares no {wanted} dependency and --onnxruntime was not given"
        raise ValueError(msg)
    if requirement_name(chosen) != wanted:
        msg = f"the {flavor} image needs {wanted}, got --onnxruntime {chosen!r}"
        raise ValueError(msg)
    lines.append(chosen)
    if flavor == "train":
        lines.extend(project["optional-dependencies"]["train"])
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flavor", choices=FLAVORS)
    parser.add_argument("--onnxruntime", help="onnxruntime requirement, e.g. onnxruntime==1.31.1")
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    args = parser.parse_args(argv)
    pyproject = tomllib.loads(args.pyproject.read_text())
    try:
        lines = image_requirements(pyproject, args.flavor, args.onnxruntime)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
