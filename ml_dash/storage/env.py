"""The LMDB environment of one experiment, shared by everything in a process.

py-lmdb refuses to open the same path twice in one process, and a notebook
may well hold a read-only view of a run while it starts a writer on it, so
environments live in a per-process registry keyed by real path and are
reference counted.  After ``fork()`` the child must not touch the parent's
environment: it is closed and reopened on first use in the child.

A process that only reads opens the environment read-only; one that writes
reopens it read-write for as long as it writes.  (Besides being the honest
mode for a reader, LMDB keeps sub-database handles opened in a read
transaction only in a read-only environment; in a read-write one it would
take a write transaction, and so the writer's lock, to open them.)
"""

import os
import threading
import warnings
import weakref

import lmdb

from ..errors import CorruptStoreError, StorageError
from .envfiles import DATA_FILE, check_data_file, data_file_identity, map_size_for, prepare_lock_file
from .layout import check_run_folder, create_run_folder

INITIAL_MAP_SIZE = 64 << 20
MAX_DBS = 1024  # each read transaction allocates per possible sub-database: 16384 made one cost 19 us instead of 2
MAX_READERS = 1024
REOPENS = 5

# LMDB needs a shared memory map and POSIX locks that work across processes:
# network filesystems give neither reliably.
NETWORK_FILESYSTEMS = frozenset(
    ("nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "9p", "afs", "fuse.sshfs", "fuse.rclone"))

# What LMDB says when the pages it walks are not what it wrote.
DAMAGE_ERRORS = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError)

_registry = {}
_registry_lock = threading.Lock()
_all_envs = weakref.WeakSet()


class MapGuard:
    """Read transactions of a process run side by side; some writer steps run alone.

    LMDB may change the size of the memory map only while the process has no
    transaction open, and py-lmdb invalidates every open transaction of the
    environment when it does: a read running in another thread (a view in
    the writer's process, or threads of an analysis script) would fail.
    Aborting a write transaction also waits until no other thread is inside
    an LMDB call, which reads in a loop can postpone forever.  Both run
    through :meth:`alone`, which holds new reads back and waits for open ones.
    """

    def __init__(self):
        # One entry per read in flight.  list.append and list.pop are atomic,
        # so a read costs no lock unless a step that runs alone is pending.
        self._reads = []
        self._alone = False
        self._one_at_a_time = threading.Lock()
        self._changed = threading.Condition(threading.Lock())

    def enter_read(self):
        reads = self._reads
        while True:
            reads.append(None)
            if not self._alone:
                return
            # Set after or before our append: back out and wait for that step.
            self.exit_read()
            with self._changed:
                while self._alone:
                    self._changed.wait()

    def exit_read(self):
        self._reads.pop()
        if self._alone:
            with self._changed:
                self._changed.notify_all()

    def alone(self, function):
        """``function()`` once no read transaction is open, with new ones held back."""
        with self._one_at_a_time:
            with self._changed:
                self._alone = True
                try:
                    while self._reads:
                        self._changed.wait()
                    return function()
                finally:
                    self._alone = False
                    self._changed.notify_all()


class HandleOpened(Exception):
    """A sub-database handle was opened; the read must start a new transaction."""


class Environment:
    """An open LMDB environment plus the sub-database handles opened in it."""

    def __init__(self, path, writable):
        self.path = path
        self.refs = 0
        self.writers = 0
        self.writable = writable
        self.map_guard = MapGuard()
        self._env = None
        self._dbs = {}
        self._open()
        _all_envs.add(self)

    def _open(self):
        for _ in range(REOPENS):
            opened = data_file_identity(self.path)
            self._env = self._open_lmdb()
            if opened is None or data_file_identity(self.path) == opened:
                break
            # LMDB opens data.mdb before it waits for its lock, so a process
            # that waited for a compaction (see compact.py) holds the file that
            # was replaced: open the new one.
            self._env.close()
        else:
            raise StorageError(f"cannot open the store at {self.path}: its data file was "
                               f"replaced {REOPENS} times while it was being opened")
        self._dbs = {}
        self._created = {}  # opened by the current write transaction
        self._creator = None  # the thread of that transaction
        self.handles_opened = 0
        self._forked = False

    def _open_lmdb(self):
        # LMDB trusts its files and would die of SIGBUS on a truncated data
        # file or a sparse lock file on a full disk: see envfiles.py.
        file_size = check_data_file(self.path)
        prepare_lock_file(self.path, MAX_READERS)
        try:
            return lmdb.open(
                self.path,
                readonly=not self.writable,
                map_size=map_size_for(file_size, INITIAL_MAP_SIZE),
                max_dbs=MAX_DBS,
                max_readers=MAX_READERS,
                # py-lmdb 3 keeps no spare read transaction by default, and each
                # begin then callocs arrays sized by max_dbs: over half the cost
                # of a point read.  A spare one is reset, so it pins no pages.
                max_spare_txns=1,
                subdir=True,
                sync=False,  # durability is the writer's job: see writer.py
                metasync=False,
                readahead=False,
                lock=True,
            )
        except lmdb.Error as exc:
            raise StorageError(f"cannot open the store at {self.path}: {exc}") from exc

        self._dbs = {}
        self._created = {}  # opened by the current write transaction
        self._creator = None  # the thread of that transaction
        self.handles_opened = 0
        self._forked = False

    @property
    def lmdb(self):
        """The py-lmdb ``Environment``, reopened first if this is a forked child."""
        if self._forked:
            # The parent's handle is unusable here; closing it in the child
            # releases nothing the parent holds (its locks are per process).
            self._env.close()
            self._open()
        return self._env

    def db(self, name, txn, create=False):
        """The handle of sub-database ``name`` for use in ``txn``.

        ``create=True`` is for write transactions: the handle is opened (and
        the sub-database created) in ``txn`` and kept apart until the writer
        calls :meth:`committed` (or :meth:`aborted`), so that no read of
        another thread uses it before it exists.  Otherwise ``txn`` is a
        read transaction, which only sees handles opened before it began (and
        LMDB drops handles opened inside one), so a missing handle is opened
        on its own and :class:`HandleOpened` makes :meth:`read` start over.
        Returns None when the sub-database does not exist.
        """
        handle = self._dbs.get(name)
        if handle is not None:
            return handle
        if self._created and self._creator == threading.get_ident():
            handle = self._created.get(name)  # the writer's own, not yet committed
            if handle is not None:
                return handle
        if create:
            handle = self._created[name] = self.lmdb.open_db(name, txn=txn, create=True)
            self._creator = threading.get_ident()
            return handle
        try:
            handle = self.lmdb.open_db(name, create=False)
        except lmdb.NotFoundError:
            return None
        self._publish(name, handle)
        raise HandleOpened(name)

    def _publish(self, name, handle):
        self.handles_opened += 1  # first: see read()
        self._dbs[name] = handle

    def committed(self):
        """The write transaction committed: its new sub-databases exist for everyone."""
        for name, handle in self._created.items():
            self._publish(name, handle)
        self._created.clear()

    def aborted(self):
        """The write transaction was aborted: LMDB closed the handles it opened."""
        self._created.clear()

    def read(self, function):
        """``function(txn)`` in a short read transaction, never held across user code."""
        guard = self.map_guard
        while True:
            guard.enter_read()
            try:
                env = self.lmdb  # inside the guard: a reopen may have replaced it
                opened = self.handles_opened
                try:
                    txn = env.begin(buffers=False)
                except lmdb.MapResizedError:
                    resized = True
                else:
                    resized = False
                    try:
                        return function(txn)
                    except HandleOpened:
                        continue
                    except DAMAGE_ERRORS as exc:
                        raise CorruptStoreError(f"the store at {self.path} is damaged: {exc}; "
                                                "ml_dash.check() reports what is") from exc
                    except lmdb.InvalidParameterError:
                        # Another thread opened a handle after this transaction
                        # began, and this one used it: begin again to see it.
                        if self.handles_opened == opened:
                            raise
                        continue
                    finally:
                        txn.abort()
            finally:
                guard.exit_read()
            if resized:
                # Another process grew the map past ours: adopt its size.
                guard.alone(lambda: env.set_mapsize(0))

    def reopen(self, writable):
        """Switch between read-only and read-write; handles are reopened lazily."""
        if writable != self.writable:
            def switch():  # not under a read of another thread
                self.close()
                self.writable = writable
                self._open()
            self.map_guard.alone(switch)

    def close(self):
        if self._env is not None:
            self._env.close()
            self._env = None


def acquire(path, writable=False):
    """The shared :class:`Environment` for the experiment directory ``path``.

    ``writable`` creates the store if needed and opens it read-write until
    the matching :func:`release`.  A read-only acquire of a missing store
    raises ``FileNotFoundError`` instead of creating an empty one.
    """
    key = os.path.realpath(path)
    with _registry_lock:
        env = _registry.get(key)
        if env is None:
            if not writable and not os.path.exists(os.path.join(key, DATA_FILE)):
                raise FileNotFoundError(f"no ml_dash store at {path}")
            if writable:
                create_run_folder(key)
            check_run_folder(key, columns=writable)  # no link may lead LMDB or a writer out
            _warn_if_network_filesystem(key)
            env = _registry[key] = Environment(key, writable)
        elif writable:
            check_run_folder(key)
            env.reopen(writable=True)
        env.refs += 1
        env.writers += bool(writable)
        return env


def is_open(path):
    """Whether this process has the environment of ``path`` open."""
    with _registry_lock:
        return os.path.realpath(path) in _registry


def release(env, writable=False):
    """Drop one reference; the environment closes when nobody uses it."""
    with _registry_lock:
        env.refs -= 1
        env.writers -= bool(writable)
        if env.refs <= 0:
            _registry.pop(env.path, None)
            env.close()
        elif env.writers == 0:
            env.reopen(writable=False)


def filesystem_type(path):
    """The type of the filesystem holding ``path`` (Linux ``/proc/mounts``), or None."""
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
            mounts = [line.split()[1:3] for line in f if len(line.split()) > 2]
    except OSError:
        return None
    best, kind = "", None
    for point, fstype in mounts:
        point = point.encode().decode("unicode_escape")  # "\\040" is a space
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fstype
    return kind


_warned = set()


def _warn_if_network_filesystem(path):
    kind = filesystem_type(path)
    if kind in NETWORK_FILESYSTEMS and path not in _warned:
        _warned.add(path)
        warnings.warn(
            f"ml_dash: {path} is on a network filesystem ({kind}); LMDB is not safe there "
            "(stale reads, broken locks, corruption): keep dash_root on a local disk",
            RuntimeWarning, stacklevel=4)


# The spare read transaction of an environment holds a slot of the shared
# reader table.  A child that closes its copy of the environment aborts the
# spare too, freeing the parent's slot under it (the parent's next read then
# fails with MDB_BAD_RSLOT).  So the parent takes its spares out for the
# fork: a transaction it holds is not aborted when the child drops it.
_held_over_fork = []


def _before_fork():
    for env in list(_all_envs):
        if env._env is not None and not env._forked:
            try:
                _held_over_fork.append(env._env.begin())
            except lmdb.Error:
                pass


def _after_fork_in_parent():
    for txn in _held_over_fork:
        txn.abort()  # back to being the spare
    _held_over_fork.clear()


def _after_fork_in_child():
    _held_over_fork.clear()  # dropped in a child, py-lmdb leaves them alone
    for env in list(_all_envs):
        if env._env is not None:
            env._forked = True


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
