"""Writing files so that a crash never leaves a half-written one: write to a temporary name, then rename."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

from edgecv.errors import ConfigError, check_interrupt


@contextmanager
def atomic_path(target: str | os.PathLike):
    """Yields a temporary path beside ``target``; renames it onto ``target`` only if the block succeeds.

    Nor after a Ctrl-C or SIGTERM that native code swallowed (it ran the handler, then cleared the
    KeyboardInterrupt): the work goes on, but none of it lands, so a run cannot finish as if not interrupted."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part" + "".join(target.suffixes[-1:]), dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make results private to the writer
    try:
        yield Path(tmp)
        check_interrupt()
        os.replace(tmp, target)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):  # the disk's fault, not a bug
            raise ConfigError(f"cannot write {target}: {e.strerror}") from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        Path(tmp).write_bytes(data)
    return Path(target)


def write_text(target: str | os.PathLike, text: str) -> Path:
    return write_bytes(target, text.encode())


_NUMBER = r"-?[0-9][0-9.eE+-]*"
_NUMBER_LIST = re.compile(rf"\[\n(?:[ ]*{_NUMBER},\n)*[ ]*{_NUMBER}\n[ ]*\]")  # only json.dumps' multi-line lists


def json_text(value) -> str:
    """``json.dumps(value, indent=2)``, but a list of numbers (a shape, one class per test image) on one line:
    result files are read in diffs and editors, and 10,000 predictions should not be 10,000 lines."""
    text = json.dumps(value, indent=2)
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(0)[1:-1].split(",")) + "]", text) + "\n"


def prepare_out_dir(path: str | os.PathLike) -> Path:
    """Creates ``path`` and proves it writable before hours of work are spent on filling it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".edgecv-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"cannot write to output folder {path}: {e.strerror or e}") from None
    return path


@contextmanager
def run_dir(path: str | os.PathLike):
    """``prepare_out_dir`` for a run's folder: when the run fails before writing anything into a folder it
    created (bad data, a refused model), the empty folder is removed again instead of left behind."""
    path = Path(path)
    existed = path.exists()
    folder = prepare_out_dir(path)
    try:
        yield folder
    except BaseException:
        if not existed:
            try:
                folder.rmdir()  # only succeeds when empty: finished stages stay for a rerun to reuse
            except OSError:
                pass
        raise


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def captured_stderr():
    """Sends file descriptor 2 to a buffer: TensorFlow's and LiteRT's C++ logs bypass Python and cut through
    progress bars. Yields a function that returns what was captured, for error messages."""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)

        def read() -> str:
            sink.seek(0)
            return sink.read().decode(errors="replace")

        try:
            yield read
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextmanager
def captured_output():
    """``captured_stderr``, and Python's stdout too: the converter, handed a Keras 3 model, exports it first and
    Keras prints the export's signature there, which would break a command's ``--json``."""
    import contextlib
    import io

    with captured_stderr() as read, contextlib.redirect_stdout(io.StringIO()):
        yield read
