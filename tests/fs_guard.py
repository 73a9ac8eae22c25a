"""A file-system guard for hostile-input tests: every deletion and rename function is intercepted.

``install(root)`` wraps ``shutil.rmtree``/``move``, ``os.remove``/``unlink``/``rmdir``/``removedirs``/
``rename``/``renames``/``replace`` (``pathlib.Path`` methods go through these). A call whose target (or either end
of a rename) does not lie inside ``root`` is refused: nothing happens on disk, the violation is recorded, and
:class:`Violation` is raised. The tests then fail on any recorded violation, so a regression in dynlearn's own
guards fails a test instead of deleting files on the machine running it (CI runs as root).

Used in-process by the ``fs_guard`` fixture (tests/test_safety.py) and in CLI subprocesses through
:func:`main` (``python tests/fs_guard.py ROOT -- dynlearn args...``), which exits with status 99 on a violation.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable

VIOLATION_EXIT = 99


class Violation(AssertionError):
    """A deletion or rename outside the test's root was attempted (and refused)."""


def _location(path, dir_fd=None) -> str:
    """Where ``path`` lives: its resolved parent directory joined with its own name (a link is not followed)."""
    p = os.fsdecode(os.fspath(path))
    if dir_fd is not None and not os.path.isabs(p):
        p = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), p)
    p = os.path.abspath(p)
    return os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p)) if os.path.basename(p) else p


def install(root: str | os.PathLike, violations: list[str]) -> Callable[[], None]:
    """Guard every deletion/rename so it may only touch paths inside ``root``; returns a function that undoes it."""
    base = os.path.realpath(os.fspath(root))

    def inside(path, dir_fd=None) -> bool:
        loc = _location(path, dir_fd)
        return loc != base and loc.startswith(base + os.sep)

    def wrap(mod, name: str, n_paths: int):
        orig = getattr(mod, name)

        def guarded(*args, **kwargs):
            fds = [kwargs.get("dir_fd"), kwargs.get("src_dir_fd"), kwargs.get("dst_dir_fd")]
            for i, path in enumerate(args[:n_paths]):
                fd = fds[0] if n_paths == 1 else fds[1 + i]
                if not inside(path, fd):
                    msg = f"{mod.__name__}.{name}({os.fsdecode(os.fspath(path))!r}) outside {base}"
                    violations.append(msg)
                    raise Violation(msg)
            return orig(*args, **kwargs)

        setattr(mod, name, guarded)
        return lambda: setattr(mod, name, orig)

    undo = [wrap(shutil, "rmtree", 1), wrap(shutil, "move", 2)]
    for name, n in (("remove", 1), ("unlink", 1), ("rmdir", 1), ("removedirs", 1), ("rename", 2),
                    ("renames", 2), ("replace", 2)):
        undo.append(wrap(os, name, n))

    def restore() -> None:
        for u in reversed(undo):
            u()

    return restore


def main() -> None:  # pragma: no cover - runs in a subprocess
    """``python fs_guard.py ROOT -- dynlearn-args...``: the dynlearn CLI under the guard."""
    root, sep, *args = sys.argv[1:]
    assert sep == "--"
    violations: list[str] = []
    install(root, violations)
    from dynlearn.cli import main as cli_main

    sys.argv = ["dynlearn", *args]
    try:
        cli_main()
    finally:
        if violations:
            print("FS-GUARD VIOLATION: " + "; ".join(violations), file=sys.stderr)
            os._exit(VIOLATION_EXIT)


if __name__ == "__main__":  # pragma: no cover
    main()
