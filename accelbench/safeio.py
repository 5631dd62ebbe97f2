"""Bounded reading of regular files only: the one way accelbench opens a file a user named.

``st_size`` cannot be trusted to bound a read: it is 0 for a FIFO (whose ``open`` blocks until a writer
comes), for ``/dev/zero`` (endless) and for most of /proc. A suite path or a cases.jsonl symlinked to such
a file hung accelbench or drove the machine into the OOM killer. So every user-named file is opened
non-blocking, checked with ``fstat`` on the open descriptor (no race with a rename), refused unless it
is a regular file, and read up to a limit, never further. Every refusal is one line that says what the
path is ("is a FIFO, not a regular file", "symlink loop").
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from .errors import ResultsError

MiB = 1 << 20


class FileRefused(ResultsError):
    """A path that is not a readable regular file within its limit; ``why`` is the bare reason."""

    def __init__(self, path: str | Path, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path, self.why = str(path), why


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"  # pragma: no cover


def os_reason(e: OSError) -> str:
    """The reason for an OSError in the words a user needs, with the errno's name."""
    if e.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    if e.errno == errno.ENOENT:
        return "no such file or directory"
    name = errno.errorcode.get(e.errno or 0, "")
    return f"{e.strerror or e}{f' ({name})' if name else ''}"


def describe(path: str | Path) -> str | None:
    """Why ``path`` is not a regular file (None when it is one): a loop, a dangling link, a FIFO..."""
    try:
        st = os.stat(path)
    except OSError as e:
        return os_reason(e)
    return None if stat.S_ISREG(st.st_mode) else f"is {_kind(st.st_mode)}, not a regular file"


def _open(path: str | Path) -> int:
    try:
        # O_NONBLOCK: opening a FIFO for reading must not wait for a writer; O_NOCTTY: never adopt a tty
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise FileRefused(path, os_reason(e)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(path, f"is {_kind(st.st_mode)}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: str | Path, limit: int) -> bytes:
    """The whole content of the regular file ``path``; refused when it holds more than ``limit`` bytes."""
    fd = _open(path)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise FileRefused(path, f"cannot read: {os_reason(e)}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FileRefused(path, f"holds more than {_size(limit)}: files read here are limited to that")
    return data


def read_text(path: str | Path, limit: int) -> str:
    """``read_bytes`` decoded as UTF-8 (one line naming the byte where it is not)."""
    data = read_bytes(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileRefused(path, f"not UTF-8 text (byte {e.start})") from None


def iter_lines(path: str | Path, max_line: int) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) for each line of the regular file ``path``, streamed: memory stays bounded
    by ``max_line`` however large the file is. A line longer than that is refused with its number. Bytes,
    because a JSON parser reads them directly; :func:`line_text` decodes one with a clear error."""
    fd = _open(path)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            i = 0
            while True:
                try:
                    raw = f.readline(max_line + 1)
                except OSError as e:
                    raise FileRefused(path, f"cannot read: {os_reason(e)}") from None
                if not raw:
                    return
                i += 1
                if len(raw) > max_line:
                    raise FileRefused(f"{path}:{i}", f"line longer than {_size(max_line)}, the limit for one record")
                yield i, raw
    finally:
        os.close(fd)


def line_text(path: str | Path, i: int, raw: bytes) -> str:
    """Line ``i`` of ``path`` as text; refused with its number when it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileRefused(f"{path}:{i}", f"not UTF-8 text (byte {e.start} of the line)") from None


def _size(n: int) -> str:
    return f"{n // MiB} MiB ({n} bytes)" if n >= MiB and n % MiB == 0 else f"{n} bytes"
