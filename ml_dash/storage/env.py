"""The LMDB environment of one experiment, shared by everything in a process.

py-lmdb refuses to open the same path twice in one process, and a notebook
may well hold a read-only view of a run while it starts a writer on it, so
environments live in a per-process registry keyed by real path and are
reference counted.  After ``fork()`` the child must not touch the parent's
environment: it is closed and reopened on first use in the child.

A process that only reads opens the environment read-only; one that writes
reopens it read-write for as long as it writes.  (Besides being the honest
mode for a reader, LMDB keeps sub-database handles opened in a read
transaction only in a read-only environment; in a read-write one it takes a
write transaction, and so LMDB's writer mutex, to open them.)

Threads and LMDB's writer mutex: py-lmdb's ``open_db`` without a
transaction waits for that mutex holding the GIL, so a first read of params
or logs while another thread (or the background sync) was inside a write
transaction, and needed the GIL to finish it, froze the process.  So no
thread waits inside LMDB for the mutex holding the GIL: every write
transaction, handle opening and map resize of the process holds
:attr:`Environment.write_lock` (whose waiters release the GIL), and a handle
is opened in a transaction begun explicitly (``begin(write=True)`` waits for
another process's writer without the GIL), after the read that missed it
has ended: the writer may wait for reads in flight (:class:`MapGuard`) while
it holds that lock.  Lock order: ``write_lock``, then ``MapGuard.alone``.
(Rejected: opening every sub-database only in the writer's transactions; a
forked child, or a writer still waiting for the writer lock, has a
read-write environment but no writer of its own to ask.)

The per-process registry of environments (``acquire``/``release``, the
``Lease`` of a view, and what ``fork()`` needs) is in ``registry.py``.
"""

import threading
import weakref

import lmdb

from ..errors import CorruptStoreError, StorageError
from .envfiles import check_data_file, data_file_identity, map_size_for, prepare_lock_file
from .failures import os_failure
from .mapguard import MapGuard

INITIAL_MAP_SIZE = 64 << 20
MAX_DBS = 1024  # each read transaction allocates per possible sub-database: 16384 made one cost 19 us instead of 2
# Read transactions open at once on one run, over all processes (each
# thread's read holds a slot while it runs; py-lmdb keeps one spare per
# process).  512, the number the design promises readers: its reader table,
# lock.mdb, is then 36 KB instead of the 64 KB that 1,024 slots took in
# every run folder.  (Rejected: LMDB's default of 126, 8 KB, which would
# bring a 100-point run from 96 KB to 68 KB but break that promise to a
# dashboard and notebooks reading one run at once.)  A killed reader's slot
# is cleared by the writer.
# (Rejected: removing lock.mdb when the last process closes the run; one
# that opened it just then keeps a reader table no later process sees, the
# hazard compact.py describes.  And a sparse lock file: a full disk would
# turn its first touch into SIGBUS, see envfiles.py.)
MAX_READERS = 512
REOPENS = 5

# What LMDB says when the pages it walks are not what it wrote.
DAMAGE_ERRORS = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError)

# every Environment of the process, for fork() (registry.py)
_all_envs: "weakref.WeakSet[Environment]" = weakref.WeakSet()


class HandleMissing(Exception):
    """The read needs a handle not opened yet: it is opened once the read has ended."""

    def __init__(self, name):
        super().__init__(name)
        self.name = name


class Environment:
    """An open LMDB environment plus the sub-database handles opened in it."""

    def __init__(self, path, writable):
        self.path = path
        self.refs = 0
        self.writers = 0
        self.writable = writable
        self.map_guard = MapGuard()
        # Held by every LMDB write transaction of this process, handle opening
        # and map resize (see the module docstring); never inside a read.
        # Reentrant, so that a thread that would begin a second write
        # transaction gets py-lmdb's error instead of waiting for itself.
        self.write_lock = threading.RLock()
        self._sync_lock = threading.Lock()  # see sync()
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
        # True when the handle cannot be used as it is: a forked child's copy
        # (reopened on first use) or a closed one (refused).  One test on the
        # read path covers both.
        self._stale = False

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
            raise os_failure(f"cannot open the store at {self.path}", exc) from exc

    @property
    def lmdb(self):
        """The py-lmdb ``Environment``, reopened first if this is a forked child."""
        if self._stale:
            if self._env is None:
                raise StorageError(f"the store at {self.path} was closed with its view "
                                   "or run; load() it again to read it")
            # The parent's handle is unusable here; closing it in the child
            # releases nothing the parent holds (its locks are per process).
            self._env.close()
            self._open()
        return self._env

    def db(self, name, txn, create=False):
        """The handle of sub-database ``name`` for use in ``txn``.

        ``create=True`` is for the writer's transactions: the handle is opened
        (and the sub-database created) in ``txn`` and kept apart until the
        writer calls :meth:`committed` (or :meth:`aborted`), so that no read
        of another thread uses it before it exists.  Otherwise ``txn`` is a
        read transaction, which only sees handles opened before it began (and
        may not open one itself without waiting for LMDB's writer mutex), so
        a handle not opened yet raises :class:`HandleMissing`: :meth:`read`
        opens it after this transaction and starts over.  Returns None when
        the sub-database does not exist in ``txn``'s snapshot.
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
        # A named database is a key of the main database (LMDB 1.0 adds a NUL).
        if txn.get(name) is None and txn.get(name + b"\0") is None:
            return None
        raise HandleMissing(name)

    def _publish(self, name, handle):
        self.handles_opened += 1  # first: see read()
        self._dbs[name] = handle

    def committed(self):
        """The write transaction committed: its new sub-databases exist for everyone."""
        if self._created:  # most commits create none
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
                    missing = None
                except lmdb.ReadersFullError as exc:
                    raise StorageError(
                        f"cannot read the store at {self.path}: {MAX_READERS} read transactions "
                        "are open on it at once, from all processes; read again when some have "
                        "ended") from exc
                except lmdb.Error:
                    self._refuse_if_closed(env)
                    raise
                else:
                    try:
                        return function(txn)
                    except HandleMissing as exc:
                        missing = exc.name
                    except DAMAGE_ERRORS as exc:
                        raise CorruptStoreError(f"the store at {self.path} is damaged: {exc}; "
                                                "ml_dash.check() reports what is") from exc
                    except lmdb.InvalidParameterError:
                        # Another thread opened a handle after this transaction
                        # began, and this one used it: begin again to see it.
                        if self.handles_opened == opened:
                            raise
                        continue
                    except lmdb.Error:
                        self._refuse_if_closed(env)
                        raise
                    finally:
                        txn.abort()
            finally:
                guard.exit_read()
            with self.write_lock:
                if missing is None:
                    # Another process grew the map past ours: adopt its size.
                    guard.alone(lambda env=env: env.set_mapsize(0))
                else:
                    self._open_handle(missing)

    def _refuse_if_closed(self, env):
        """The error of a read that another thread's ``close()`` cut short, as after it."""
        if self._env is not env:
            raise StorageError(f"the store at {self.path} was closed with its view or run "
                               "while it was read; load() it again to read it") from None

    def _open_handle(self, name):
        """Open the handle of the existing sub-database ``name`` (under ``write_lock``).

        In a read-write environment LMDB keeps the handle only when it was
        opened in a write transaction: one that writes nothing, whose commit
        writes nothing either.  Its begin waits for a writer of another
        process, if any, without the GIL.
        """
        while name not in self._dbs:
            env = self.lmdb
            try:
                if self.writable:
                    txn = env.begin(write=True)
                    try:
                        handle = env.open_db(name, txn=txn, create=False)
                    except BaseException:
                        self.map_guard.alone(txn.abort)  # see MapGuard
                        raise
                    txn.commit()
                else:
                    handle = env.open_db(name, create=False)
            except lmdb.MapResizedError:
                self.map_guard.alone(lambda env=env: env.set_mapsize(0))
                continue
            except lmdb.NotFoundError:
                return  # not in the newest snapshot: the next read says None
            self._publish(name, handle)

    def reopen(self, writable):
        """Switch between read-only and read-write; handles are reopened lazily."""
        if writable != self.writable:
            def switch():  # not under a read of another thread
                self.close()
                self.writable = writable
                self._open()
            with self.write_lock:
                self.map_guard.alone(switch)

    def sync(self):
        """Flush the data file to disk (``env.sync(True)``), with or without ``write_lock``.

        py-lmdb holds a lock of its own while it syncs; a ``fork()`` in the
        meantime would leave it held in the child, whose first use of the
        environment would then wait forever.  The fork waits for this lock.
        """
        with self._sync_lock:
            self.lmdb.sync(True)

    def close(self):
        if self._env is not None:
            # Marked closed first: a read of another thread failing meanwhile says so.
            env, self._env = self._env, None
            self._stale = True  # .lmdb refuses from now on
            env.close()
