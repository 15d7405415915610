"""What a run folder holds, checked before ml_dash opens anything in it.

ml_dash writes these entries, and only these, in a run's folder::

    data.mdb, lock.mdb, writer.lock       regular files
    columns/<stream id>/<column id>.f64   folders of regular files
    files/<content id>                    a folder of regular files
    .compacting/                          a folder, while compact() runs

A run folder may come from anywhere (copied from a colleague, unpacked from
an archive), so none of them may be a symbolic link: LMDB, the column files
and the content files are opened by name, and a link would make ml_dash
truncate, map, write or delete a file outside the run folder (a
``writer.lock`` link truncating its target, a ``files`` link letting a
repair clean up the target folder).  :func:`check_run_folder` refuses such
a folder with a ``StorageError`` naming the entry, each time a store is
opened, by the writer and by readers alike.  (Opening each file with
``O_NOFOLLOW`` was the alternative for the entries that LMDB and the
column files open: LMDB takes no such flag and the folders on the way to a
column file would need ``openat``; one ``lstat`` per entry at open costs
less than either.)  The content files under ``files/`` are not listed
here, as a run may hold many: they are opened with ``O_NOFOLLOW`` where
they are used (see ``blobs.py``).
"""

import errno
import os
import stat

from ..errors import StorageError
from .failures import os_failure

# What ml_dash makes in a run folder: True for a regular file, False for a folder.
_FIXED = {"data.mdb": True, "lock.mdb": True, "writer.lock": True,
          "files": False, ".compacting": False, "columns": False}
COLUMNS = "columns"


def check_run_folder(directory, columns=True):
    """``StorageError`` if an entry ml_dash uses in ``directory`` is a symbolic
    link, or one of its fixed entries is not the kind ml_dash makes there.

    ``columns=False`` leaves out the folders under ``columns/`` (one listing
    per stream): a reader, which only reads the columns it is asked for,
    checks each with :func:`check_no_link` when it first maps it, so opening
    a run to list it costs one listing of its folder, not one per stream.
    A folder whose path is not valid UTF-8 (made by another program: ml_dash
    refuses such prefixes) is refused too, as LMDB cannot open it.
    """
    try:
        directory.encode("utf-8")
    except UnicodeEncodeError:
        raise StorageError(f"cannot open the run folder {directory!r}: its path is not valid "
                           "UTF-8, and LMDB opens only UTF-8 paths; rename it") from None
    for entry in _entries(directory):
        regular = _FIXED.get(entry.name)
        if regular is None:
            continue
        if regular and not entry.is_file(follow_symlinks=False):
            _refuse(entry.path, entry.is_symlink(), "a regular file")
        if not regular and not entry.is_dir(follow_symlinks=False):
            _refuse(entry.path, entry.is_symlink(), "a folder")
        if entry.name == COLUMNS and columns:
            # Below columns/ only links are refused: a stray file there (a
            # desktop's .DS_Store, say) is never opened, and refusing it would
            # lock the run away.
            for stream in _entries(entry.path):
                if stream.is_symlink():
                    _refuse(stream.path, True, "a folder")
                if stream.is_dir(follow_symlinks=False):
                    for column in _entries(stream.path):
                        if column.is_symlink():
                            _refuse(column.path, True, "a regular file")


def check_no_link(directory, path):
    """``StorageError`` if ``path`` inside the run folder ``directory``, or a
    folder between the two, is a symbolic link (a missing one is fine)."""
    relative = os.path.relpath(path, directory).split(os.sep)
    for depth in range(1, len(relative) + 1):
        step = os.path.join(directory, *relative[:depth])
        try:
            is_link = stat.S_ISLNK(os.lstat(step).st_mode)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"cannot inspect {step}: {exc.strerror or exc}") from exc
        if is_link:
            _refuse(step, True, "a file or folder")


def _entries(folder):
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise os_failure(f"cannot list {folder}", exc) from exc


def _refuse(path, is_link, kind):
    if is_link:
        raise StorageError(
            f"{path} is a symbolic link; ml_dash never follows links inside a run folder, "
            "as it would read or write outside it: replace the link with the real file or "
            "folder, or remove it (ml_dash.check(..., repair=True) rebuilds a column file)")
    raise StorageError(f"{path} should be {kind}, as ml_dash makes it: this run folder was "
                       "not written by ml_dash, or was damaged")


def create_run_folder(directory):
    """Create ``directory`` and the folders above it; ``StorageError`` naming the culprit.

    ``os.makedirs`` says ``NotADirectoryError``, ``FileExistsError`` or
    ``PermissionError`` with a path that is not the one at fault; this names
    the file that stands where a folder should be, or the folder that cannot
    be written.  Folders made before a failure are removed again, so a
    refused run leaves nothing behind.
    """
    missing = []
    path = directory
    while True:  # up to the first folder that exists
        try:
            mode = os.stat(path).st_mode
            break
        except (FileNotFoundError, NotADirectoryError):  # a file above: found further up
            missing.append(path)
            path = os.path.dirname(path)
        except OSError as exc:
            raise StorageError(
                f"cannot create the run folder {directory}: {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(mode):
        what = "the run folder" if path == directory else "a folder on the way to it"
        raise StorageError(f"cannot create the run folder {directory}: {path} is a file "
                           f"where {what} should be")
    made = []
    try:
        for path in reversed(missing):
            try:
                os.mkdir(path)
            except FileExistsError:  # another process made it meanwhile
                if not os.path.isdir(path):
                    raise
                continue
            made.append(path)
    except OSError as exc:
        for path in reversed(made):
            try:
                os.rmdir(path)
            except OSError:
                pass
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            cause = f"{os.path.dirname(exc.filename or path)} cannot be written ({exc.strerror})"
        else:
            cause = f"{exc.filename or path}: {exc.strerror or exc}"
        raise StorageError(f"cannot create the run folder {directory}: {cause}") from exc


def fsync_directory(path):
    """Make the entries of folder ``path`` durable: a rename or a new file in it
    survives a crash of the machine only once its folder is synced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
