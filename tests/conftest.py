"""The suite runs on a fresh clone: no test may read a file beside the repository.

An audit hook sees every file this process opens. A path that resolves inside the
repository's parent folder but outside the repository (for example ``../shared/datasets``)
fails the test that opened it: such a file exists only on a machine that has it, not on a
clone. The interpreter's own folders (the virtual environment may live beside the
repository, as a link) and the temporary folder are allowed. Subprocesses are not watched.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_OUTSIDE = str(REPO.parent)
_INSIDE = str(REPO)


def _allowed_roots() -> tuple[str, ...]:
    """Folders beside the repository that a test may read: the interpreter's, and the temporary one."""
    roots = {sys.prefix, sys.exec_prefix, sys.base_prefix, tempfile.gettempdir()}
    return tuple(os.path.realpath(r) for r in roots if r)


_ALLOWED = _allowed_roots()
_violations: list[str] = []


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _outside_the_clone(path: str) -> bool:
    """Whether ``path`` (already resolved) lies beside the repository rather than in it."""
    return _under(path, _OUTSIDE) and not _under(path, _INSIDE) and not any(_under(path, root) for root in _ALLOWED)


def _watch_opens(event: str, args: tuple) -> None:
    if event != "open" or not args:
        return
    target = args[0]
    if isinstance(target, int) or target is None:
        return  # a file descriptor: its path was checked when it was opened
    try:
        path = os.path.realpath(os.fsdecode(target))
    except (TypeError, ValueError, OSError):
        return
    if _outside_the_clone(path):
        _violations.append(path)


sys.addaudithook(_watch_opens)


def _fail_if_any(when: str) -> None:
    opened = sorted(set(_violations))
    _violations.clear()
    if opened:
        pytest.fail(
            f"{when} opened files outside the repository, which a fresh clone does not have: " + ", ".join(opened),
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _no_file_beside_the_repository() -> Iterator[None]:
    """Fail a test that opened a file outside the clone (see the module's docstring).

    Opens before the test's own setup (collection, a module's fixtures) fail the next test to start.
    """
    _fail_if_any("collection or a wider fixture's setup")
    yield
    _fail_if_any("this test")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Opens after the last test (a wider fixture's teardown) fail the run."""
    if _violations:
        print(f"\nopened files outside the repository: {', '.join(sorted(set(_violations)))}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
