"""File names as the OS gives them, and outputs that never destroy what a user owns.

- Names that are not valid UTF-8: Python keeps their bytes as surrogate escapes (`os.fsdecode`). Printing,
  JSON, logs and OpenCV's text drawing may fail on those, so messages and labels use `printable`; OpenCV
  itself crashes (a segmentation fault) when handed such a path, so it gets `opencv_path`, a plain name for
  the same file.
- Outputs: `check_output` refuses a path that cannot be written, `refuse_clobbering` one that is also an
  input (by any path: a second spelling, a symlink, a hard link), `refuse_existing` an existing file the
  command did not write (unless --overwrite), and `AtomicOutput` writes to a temporary
  file beside the destination, moved into place only once complete: a failed or interrupted run leaves
  neither a half-written file nor the temporary one, and an existing file stays as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType

PathLike = str | os.PathLike


class OutputError(ValueError):
    """An output that cannot or must not be written; the message names it and says what to do."""


def is_plain(text: str) -> bool:
    """Whether `text` is valid UTF-8 text (no surrogate escapes from undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(name: PathLike) -> str:
    """`name` as valid text: bytes that are not UTF-8 are shown as `\\xNN`, so that a message, a log line, a
    JSON file or a label drawn by OpenCV cannot fail on it. Valid names come back unchanged."""
    text = os.fspath(name)
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    if is_plain(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no undecodable byte produced
        return text.encode("utf-8", "backslashreplace").decode("ascii")


@contextlib.contextmanager
def opencv_path(path: PathLike) -> Iterator[str]:
    """A name OpenCV can open for `path`: the path itself when it is valid UTF-8; otherwise a symlink with a
    plain name in a new temporary folder, to the file (its name is not UTF-8) or to its folder (only the
    folder's is). The link is removed when the block ends; an opened capture or writer keeps its file.
    Raises OSError when the link cannot be made."""
    text = os.fspath(path)
    if is_plain(text):
        yield text
        return
    folder = tempfile.mkdtemp(prefix="xvit_edge-")
    full = os.path.abspath(text)  # a relative target would be read relative to the link's folder
    parent, name = os.path.split(full)
    if is_plain(name):
        link, target = os.path.join(folder, "folder"), parent
        opened = os.path.join(link, name)
    else:
        suffix = os.path.splitext(name)[1]  # the container format is read from it
        link, target = os.path.join(folder, "video" + (suffix if is_plain(suffix) else "")), full
        opened = link
    try:
        os.symlink(target, link)
        yield opened
    finally:
        with contextlib.suppress(OSError):
            os.unlink(link)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether `a` and `b` name one file: the same inode when both exist (another spelling of the path, a
    symlink, a hard link), else the same path once symlinks are resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_clobbering(outputs: Mapping[str, PathLike | None], inputs: Mapping[str, PathLike | None]) -> None:
    """Raise an OutputError when an output is the same file as an input, or as another output. Keys name
    where each path came from (a flag), for the message."""
    outs = [(what, p) for what, p in outputs.items() if p is not None]
    for what, out in outs:
        for source, path in inputs.items():
            if path is not None and same_file(out, path):
                raise OutputError(f"{what} {printable(out)} is the same file as {source} {printable(path)}: writing "
                                  f"it would destroy {source}; choose another {what} path")
    for i, (what, out) in enumerate(outs):
        for other, path in outs[i + 1:]:
            if same_file(out, path):
                raise OutputError(f"{what} and {other} are the same file ({printable(out)}); give each its own path")


OVERWRITE_HELP = ("replace output files that already exist; without it a command stops, before doing any work, "
                  "at an existing file it cannot tell it wrote itself")


def refuse_existing(outputs: Mapping[str, PathLike | None], overwrite: bool,
                    ours: Callable[[Path], bool] | None = None) -> None:
    """Raise an OutputError for the first output that already exists, unless `overwrite` or `ours(path)` (a file
    this project wrote, which a re-run may replace: a checkpoint, an artifact with its sidecar). Keys name
    where each path came from (a flag), for the message."""
    if overwrite:
        return
    for what, path in outputs.items():
        if path is None:
            continue
        p = Path(path)
        if (p.exists() or p.is_symlink()) and not (ours is not None and ours(p)):
            raise OutputError(f"{what} {printable(p)} already exists; choose another path, or pass --overwrite to "
                              "replace it")


def check_output(path: PathLike, what: str, *, create_folders: bool = False) -> None:
    """Raise an OutputError unless `path` can be written: not a folder, and in a writable folder (or, with
    `create_folders`, under a writable one that the missing folders can be made in)."""
    p = Path(os.path.abspath(path))
    if p.is_dir():
        raise OutputError(f"{what} {printable(path)} is a folder; name a file to write")
    parent = p.parent
    if create_folders:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {printable(path)}: folder {printable(parent)} does not exist or is not "
                          "writable")


class AtomicOutput:
    """A temporary file beside `path` to write in full; `commit()` moves it onto `path` (atomically: the same
    folder), `discard()` removes it. Used as a context manager it commits when the block ends normally and
    discards when it ends with an exception (a KeyboardInterrupt included). Missing folders are created.

    `tmp` keeps `path`'s extension (OpenCV and matplotlib pick the format from it) and a plain name."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stem = self.path.name if is_plain(self.path.name) else "output"
        suffix = self.path.suffix if is_plain(self.path.suffix) else ""
        while True:
            tmp = self.path.with_name(f".{stem}.{secrets.token_hex(4)}.partial{suffix}")
            try:  # created here, exclusively, with the usual permissions (mkstemp's are owner-only)
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:
                continue
        self.tmp = tmp

    def commit(self) -> None:
        try:
            os.replace(self.tmp, self.path)
        except OSError:
            self.discard()
            raise

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)

    def __enter__(self) -> "AtomicOutput":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` through an AtomicOutput."""
    with AtomicOutput(path) as out:
        out.tmp.write_text(text, encoding="utf-8")
