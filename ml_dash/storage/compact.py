"""Compaction: rewriting a run's LMDB file without its free pages.

LMDB reuses free pages but never shrinks its file, so after a stalled
reader made it grow (or a long run was cut short) :func:`compact_store`
copies it with ``copy(compact=True)`` into a temporary file and renames
that over ``data.mdb``.

The rule that makes this safe: **while the file is replaced, no process has
the environment open, and none can open it.**  Two locks give that:

* the writer lock (``writer.lock``, held for the whole compaction): no
  writer is live and none can start;
* LMDB's own: every process that has the environment open holds a shared
  ``fcntl`` lock on the first byte of ``lock.mdb``, and a process opening
  it waits for that lock.  Compaction takes it exclusively (refusing, with
  the readers' pids, while anyone holds it), so a reader that arrives
  meanwhile waits inside its open and then maps the new file.

The copy itself runs with LMDB's locking off (``lock=False``): LMDB would
otherwise take and then share that same byte in this process.  ``lock.mdb``
is kept, its table rebuilt for the new file before the lock is given back
(:func:`_reset_lock_table`).

Rejected: removing ``lock.mdb`` after the rename (what an earlier version
did).  A reader that opened between the rename and the removal kept the
removed lock file while later processes made a new one; two reader tables
for one file made them abort once a writer ran.  A reader that opened
between the readers check and the rename kept the replaced file and never
saw new data.
"""

import errno
import fcntl
import os

import lmdb

from ..errors import ExperimentError, StorageError
from . import env as environments
from . import registry
from .envfiles import DATA_FILE, LOCK_FILE, check_data_file, map_size_for, prepare_lock_file
from .layout import check_run_folder, fsync_directory
from .lock import WriterLock
from .owner import refuse_if_writer_lives

TEMPORARY = ".compacting"


def compact_store(prefix, path):
    """Rewrite the store at ``path`` without free pages; returns ``(bytes before, after)``.

    Needs the writer lock (no live writer) and no process with the store
    open, this one included: ``ExperimentError`` naming them otherwise.
    """
    data = os.path.join(path, DATA_FILE)
    if not os.path.exists(data):
        raise FileNotFoundError(f"no experiment {prefix!r} at {path}")
    lock = WriterLock(path, action="compact it")
    try:
        check_run_folder(path, columns=False)  # it rewrites data.mdb and lock.mdb alone
        env = registry.acquire(path)
        try:  # a writer whose writer.lock was deleted under it still owns the store
            refuse_if_writer_lives(env, lock, path)
        finally:
            registry.release(env)
        with registry.opens_held_back(path) as open_here:  # to the end: see opens_held_back
            if open_here:
                raise ExperimentError(
                    f"cannot compact {prefix!r}: this process has it open; close its views first")
            size = check_data_file(path)
            prepare_lock_file(path, environments.MAX_READERS)
            lock_fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR)
            try:
                _take_lmdb_exclusively(prefix, path, lock_fd)
                temporary = os.path.join(path, TEMPORARY)
                _copy_compacted(path, temporary, map_size_for(size, environments.INITIAL_MAP_SIZE))
                copied = os.path.join(temporary, DATA_FILE)
                os.replace(copied, data)
                _remove_copy(temporary)
                fsync_directory(path)
                _reset_lock_table(path, map_size_for(size, environments.INITIAL_MAP_SIZE))
            finally:
                os.close(lock_fd)  # gives LMDB's lock back: waiting readers open the new file
        return size, os.path.getsize(data)
    finally:
        lock.release()


def _take_lmdb_exclusively(prefix, path, lock_fd):
    try:
        fcntl.lockf(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0, os.SEEK_SET)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise StorageError(f"cannot lock {path}/{LOCK_FILE}: {exc.strerror or exc}") from exc
        pids = _lock_holders(lock_fd) or ["other"]
        raise ExperimentError(
            f"cannot compact {prefix!r}: processes {', '.join(pids)} are reading it") from None


def _copy_compacted(path, temporary, map_size):
    _remove_copy(temporary)  # left by a compaction that was killed
    os.makedirs(temporary)
    try:
        env = lmdb.open(path, readonly=True, lock=False, map_size=map_size, max_dbs=2,
                        subdir=True, readahead=False)
        try:
            env.copy(temporary, compact=True)
        finally:
            env.close()
        with open(os.path.join(temporary, DATA_FILE), "rb") as f:
            os.fsync(f.fileno())
    except (lmdb.Error, OSError) as exc:
        _remove_copy(temporary)
        raise StorageError(f"cannot compact the store at {path}: {exc}") from exc


def _reset_lock_table(path, map_size):
    """Have LMDB rebuild ``lock.mdb`` for the new file, before anyone else opens it.

    The lock file holds the last transaction id, and LMDB picks the meta
    page to read by its parity: a process that went on with the old file's
    table would read the wrong page.  LMDB rebuilds the table when it opens
    the environment alone; processes waiting for the lock byte only share
    it, so this process opens it once itself, alone (its own ``fcntl`` lock
    does not stand in its way), while every other one still waits.
    """
    try:
        lmdb.open(path, readonly=True, lock=True, map_size=map_size, max_dbs=2,
                  max_readers=environments.MAX_READERS, subdir=True, readahead=False).close()
    except lmdb.Error as exc:
        raise StorageError(f"cannot reopen the compacted store at {path}: {exc}") from exc


def _lock_holders(fd):
    """Pids holding POSIX locks on the file open as ``fd`` (Linux ``/proc/locks``)."""
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    pids = set()
    for line in lines:
        fields = line.split()
        if "POSIX" in fields and "->" not in fields:
            at = fields.index("POSIX")
            if len(fields) > at + 4 and fields[at + 4] == inode and fields[at + 3] != str(os.getpid()):
                pids.add(fields[at + 3])
    return sorted(pids, key=int)


def _remove_copy(temporary):
    """Remove the compaction folder ``temporary`` and the copy of the store in it.

    Compaction writes a ``data.mdb`` there and nothing else; a folder that
    holds anything else (another run, made there by an older version that
    let prefixes nest) is not ours to delete: ``StorageError``, nothing removed.
    """
    try:
        names = os.listdir(temporary)
    except FileNotFoundError:
        return
    if set(names) - {DATA_FILE}:
        raise StorageError(f"cannot compact: {temporary} holds files compaction does not write "
                           f"({', '.join(sorted(names))}); move them out of the run folder")
    if names:
        os.remove(os.path.join(temporary, DATA_FILE))
    os.rmdir(temporary)
