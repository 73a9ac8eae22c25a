"""The one place where user-given names become paths, and where anything on disk is deleted or renamed.

Every ``rmtree``, ``unlink``, ``rename`` and ``replace`` in dynlearn goes through :func:`remove` or
:func:`rename`; every group name a user gives goes through :func:`check_name`; every path a user gives for a store
or a page goes through :func:`check_store_target` or :func:`check_page_target`. The rules:

- a **name** (group, experiment, reproduction, plugin) matches ``[A-Za-z][A-Za-z0-9_.-]*`` (at most 128
  characters): no separators, no ``.``/``..``, no spaces, no NUL, nothing that could leave a directory;
- a deletion or rename target is resolved (symlinks included) and must lie **strictly inside** a dynlearn store
  (a directory whose root ``zarr.json`` carries dynlearn's attrs), or be a dynlearn store root the caller was told
  to overwrite, or be a scratch directory this process made itself (:func:`scratch_dir`);
- a path given for a new store must not be an existing file or a directory that is not a dynlearn store
  (a home directory, a source tree, someone else's zarr store): those are refused, never emptied;
- a page (``--html``) is written atomically and only replaces an earlier dynlearn page, never a directory or
  another file.

Everything refused raises :class:`~dynlearn.errors.PathError` (one line, exit status 2 in the CLI).

    >>> check_name("fixed_points")
    'fixed_points'
    >>> check_name("../etc")
    Traceback (most recent call last):
    ...
    dynlearn.errors.PathError: group name '../etc' is not allowed: use letters, digits, '_', '.', '-', starting with a letter (no '/', no '..', no spaces)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import PathError, StoreError

__all__ = [
    "NAME_PATTERN",
    "RUN_GROUPS",
    "check_name",
    "check_inside",
    "is_store",
    "remove",
    "rename",
    "remove_empty_dir",
    "scratch_dir",
    "check_store_target",
    "check_page_target",
    "check_root_json",
    "write_text_atomic",
    "PAGE_MARKER",
]

NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}\Z")
#: groups a training run or a reproduction owns: never an analyzer's target
RUN_GROUPS = frozenset({"train", "params", "state", "claims"})
#: the marker a page written by dynlearn carries (only such a file is ever replaced)
PAGE_MARKER = '<meta name="generator" content="dynlearn">'
_ATTR_KEY = "dynlearn"
#: what a metadata file that does not parse is called (here and in :mod:`dynlearn.integrity`)
BAD_JSON = "not valid JSON (truncated or overwritten?)"
_SCRATCH: set[str] = set()


def check_name(name: Any, what: str = "group name") -> str:
    """``name`` if it is a safe single path component, else :class:`PathError` naming the allowed form."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise PathError(
            f"{what} {name!r} is not allowed: use letters, digits, '_', '.', '-', starting with a letter "
            "(no '/', no '..', no spaces)"
        )
    return name


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def is_store(path: str | os.PathLike) -> bool:
    """True if ``path`` (resolved) is a directory whose root ``zarr.json`` carries dynlearn's root attrs."""
    p = _real(path)
    try:
        meta = json.loads((p / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and _ATTR_KEY in (meta.get("attributes") or {})


def _strictly_inside(target: Path, store: Path) -> bool:
    return store in target.parents


def check_inside(target: str | os.PathLike, store: str | os.PathLike, action: str = "write") -> Path:
    """``target`` resolved (symlinks included); :class:`PathError` unless it lies strictly inside the dynlearn
    store ``store``."""
    s = _real(store)
    if not is_store(s):
        raise PathError(f"refusing to {action} {target}: {store} is not a dynlearn store")
    t = _real(target)
    if not _strictly_inside(t, s):
        raise PathError(f"refusing to {action} {target}: it resolves to {t}, outside the store {s}")
    return t


def scratch_dir(parent: str | os.PathLike | None = None, prefix: str = "dynlearn-") -> Path:
    """A new temporary directory this process may later :func:`remove` (``parent``: where; default the
    system's temporary directory)."""
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    p = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=parent))
    _SCRATCH.add(str(_real(p)))
    return p


def remove(target: str | os.PathLike, *, store: str | os.PathLike | None = None, missing_ok: bool = True) -> None:
    """Delete ``target`` (a file or a directory tree) — only if that is provably safe.

    Allowed: ``target`` strictly inside the dynlearn store ``store``; ``target`` a dynlearn store root itself
    (``store=None``: the caller was told to overwrite it); ``target`` a scratch directory made by
    :func:`scratch_dir` in this process. Anything else raises :class:`PathError` and deletes nothing.
    """
    p = Path(target)
    if not os.path.lexists(p):
        if missing_ok:
            return
        raise PathError(f"nothing to remove at {p}")
    real = _real(p)
    if str(real) in _SCRATCH and not p.is_symlink():
        _SCRATCH.discard(str(real))
    elif store is not None:
        check_inside(p, store, "delete")
    elif not (is_store(real) and not p.is_symlink()):
        raise PathError(f"refusing to delete {p}: it is not a dynlearn store")
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(real)
    else:
        os.unlink(p)


def rename(src: str | os.PathLike, dst: str | os.PathLike, *, store: str | os.PathLike | None = None) -> None:
    """Atomically move ``src`` to ``dst`` (``os.replace``) — only if both ends are provably safe.

    With ``store``: both ``src`` and ``dst`` must lie strictly inside that dynlearn store. Without: ``src`` must be
    a scratch directory of this process (or a file inside one) or a dynlearn store, and ``dst`` must not exist —
    or be a page dynlearn wrote, replaced by a file (:func:`write_text_atomic`).
    """
    s, d = Path(src), Path(dst)
    if store is not None:
        check_inside(s, store, "move")
        check_inside(d, store, "replace")
    else:
        rs = _real(s)
        if not (_in_scratch(rs) or is_store(rs)):
            raise PathError(f"refusing to move {s}: it is neither a scratch directory nor a dynlearn store")
        if os.path.lexists(d) and not (s.is_file() and _is_page(d)):
            raise PathError(f"refusing to replace {d}: it exists")
    rs = str(_real(s))
    os.replace(s, d)
    _SCRATCH.discard(rs)


def remove_empty_dir(path: str | os.PathLike) -> None:
    """Remove ``path`` if it is an empty directory (not a symlink); leave it otherwise. Never loses data."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
        os.rmdir(p)


def _in_scratch(real: Path) -> bool:
    return str(real) in _SCRATCH or any(str(q) in _SCRATCH for q in real.parents)


def _is_page(p: Path) -> bool:
    if p.is_symlink() or not p.is_file():
        return False
    try:
        with open(p, "rb") as fh:
            return PAGE_MARKER.encode() in fh.read(4096)
    except OSError:
        return False


def check_store_target(path: str | os.PathLike, *, overwrite: bool = False, must_exist: bool = False) -> Path:
    """Validate a path a user gave for a result store (``--out``, a store argument).

    Refused: an empty path, an unexpanded ``~``, an existing file, a symlink, an existing directory that is not a
    dynlearn store (even with ``overwrite``: such a directory is never emptied). With ``must_exist`` the store must
    be there.
    """
    text = os.fspath(path)
    if not str(text).strip():
        raise PathError("empty store path")
    if "\x00" in str(text):
        raise PathError(f"store path {text!r} contains a NUL byte")
    if str(text).startswith("~"):
        raise PathError(f"store path {text!r} starts with '~', which is not expanded here: give the full path")
    p = Path(text)
    if p.is_symlink():
        raise PathError(f"store path {p} is a symbolic link: give the store's real path")
    if p.exists():
        if not p.is_dir():
            raise PathError(f"{p} is a file, not a dynlearn store")
        if not is_store(p):
            check_root_json(p)  # a dynlearn store whose root zarr.json is damaged says so
            what = "a zarr store not written by dynlearn" if (p / "zarr.json").exists() else "a directory that is not a dynlearn store"
            hint = " (--overwrite never empties such a directory)" if overwrite else ""
            raise PathError(f"{p} is {what}; choose another path{hint}")
    elif must_exist:
        raise PathError(f"no result store at {p}")
    elif p.parent.exists() and not p.parent.is_dir():
        raise PathError(f"{p.parent} is a file, not a directory")
    return p


def check_root_json(p: Path) -> None:
    """The one-line :class:`StoreError` of a store whose root ``zarr.json`` exists but is not a JSON object
    (the same line :func:`dynlearn.integrity.verify` gives)."""
    try:
        if isinstance(json.loads((p / "zarr.json").read_bytes()), dict):
            return
    except OSError:
        return  # missing or unreadable: the caller's own checks say so
    except ValueError:
        pass
    raise StoreError(f"{p}/zarr.json: {BAD_JSON} (run 'dynlearn verify {p}')")


def check_page_target(path: str | os.PathLike, *, replace: bool = True) -> Path:
    """Validate a path for an HTML page: not a directory, not a symlink, and an existing file only if it is a
    page dynlearn wrote (and ``replace`` is allowed)."""
    text = os.fspath(path)
    if not str(text).strip() or str(text).endswith(("/", os.sep)):
        raise PathError(f"page path {text!r} is not a file name")
    p = Path(text)
    if p.is_symlink():
        raise PathError(f"page path {p} is a symbolic link: give a real file path")
    if p.is_dir():
        raise PathError(f"page path {p} is a directory: give a file name such as {p / 'page.html'}")
    if p.exists():
        if not _is_page(p):
            raise PathError(f"{p} exists and is not a page written by dynlearn; refusing to overwrite it")
        if not replace:
            raise PathError(f"{p} exists; pass --overwrite (or --html PATH) to replace it")
    return p


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a scratch file in the same directory, then one atomic rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = scratch_dir(p.parent, prefix=f".{p.name}.")
    try:
        tmp = tmp_dir / p.name
        tmp.write_text(text, encoding="utf-8")
        rename(tmp, p)
    finally:
        remove(tmp_dir)
    return p
