"""The per-process registry of LMDB environments: acquire, release, leases, fork.

py-lmdb refuses to open the same path twice in one process, so each
experiment directory has one shared :class:`~ml_dash.storage.env.Environment`
per process, keyed by real path and reference counted.  A view's reference
is released by ``close()`` or, through a :class:`Lease`, when its owner is
garbage collected.  ``fork()`` is prepared for here (see the end).
"""

import contextlib
import os
import threading
import warnings
import weakref

import lmdb

from .env import Environment, _all_envs
from .envfiles import DATA_FILE
from .layout import check_run_folder, create_run_folder
from .mapguard import MapGuard

# LMDB needs a shared memory map and POSIX locks that work across processes:
# network filesystems give neither reliably.
NETWORK_FILESYSTEMS = frozenset(
    ("nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "9p", "afs", "fuse.sshfs", "fuse.rclone"))

_registry: dict[str, Environment] = {}
_registry_lock = threading.Lock()


def acquire(path, writable=False):
    """The shared :class:`Environment` for the experiment directory ``path``.

    ``writable`` creates the store if needed and opens it read-write until
    the matching :func:`release`.  A read-only acquire of a missing store
    raises ``FileNotFoundError`` instead of creating an empty one.
    """
    key = os.path.realpath(path)
    with _registry_lock:
        _release_collected_locked()
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


@contextlib.contextmanager
def opens_held_back(path):
    """Hold back every open of an environment in this process for the block,
    yielding whether ``path`` is open here (a view only forgotten, not closed,
    does not count: it is released first).

    For compaction: LMDB's lock byte keeps other processes out while the data
    file is replaced, not other threads of this one (POSIX locks are per
    process), whose ``load()`` would open the file being replaced.
    """
    with _registry_lock:
        _release_collected_locked()
        yield os.path.realpath(path) in _registry


def release(env, writable=False):
    """Drop one reference; the environment closes when nobody uses it."""
    with _registry_lock:
        _release_collected_locked()
        _release_locked(env, writable)


def _release_locked(env: Environment, writable: bool) -> None:
    env.refs -= 1
    env.writers -= bool(writable)
    if env.refs <= 0:
        if _registry.get(env.path) is env:
            del _registry[env.path]
        env.close()
    elif env.writers == 0:
        env.reopen(writable=False)


class Lease:
    """One reference to a shared :class:`Environment`, dropped exactly once.

    :meth:`release` drops it now; otherwise it is dropped when ``owner`` (the
    object whose methods read through the environment, such as a view's
    ``StoreReader``) is garbage collected, so a forgotten view keeps no file
    descriptors open and does not make ``compact()`` refuse.  Column arrays
    handed out from it hold their own mappings and stay valid.
    """

    def __init__(self, env, owner):
        self.env = env
        self._finalizer = weakref.finalize(owner, _release_collected, env)
        self._finalizer.atexit = False  # at interpreter exit the process lets go of all

    def release(self):
        """Release the reference now; later calls (and the collector) do nothing."""
        if self._finalizer.detach() is not None:
            release(self.env)


# Environments whose owners were collected, to release under _registry_lock.
_collected: list[Environment] = []


def _release_collected(env):
    """Release ``env`` for a collected owner, now if that needs no waiting.

    The collector runs wherever an allocation triggers it, also inside
    :func:`acquire` of this very thread, which holds the registry lock:
    waiting for that lock here could wait forever.  So an owner collected
    while the lock is taken is released by the next acquire or release.
    """
    _collected.append(env)
    if _registry_lock.acquire(blocking=False):
        try:
            _release_collected_locked()
        finally:
            _registry_lock.release()


def _release_collected_locked():
    while _collected:
        _release_locked(_collected.pop(), writable=False)


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


_warned: set[str] = set()
_kind_of_device: dict[int, str | None] = {}


def _warn_if_network_filesystem(path):
    # The type is remembered per device: every folder of one filesystem has its st_dev,
    # and a filesystem mounted later gets a device of its own.  (Reading /proc/mounts
    # at every open was a fifth of the time of listing 10,000 small runs.)
    try:
        device = os.stat(path).st_dev
    except OSError:
        device = None
    if device is not None and device in _kind_of_device:
        kind = _kind_of_device[device]
    else:
        kind = filesystem_type(path)
        if device is not None:
            _kind_of_device[device] = kind
    if kind in NETWORK_FILESYSTEMS and path not in _warned:
        _warned.add(path)
        warnings.warn(
            f"ml_dash: {path} is on a network filesystem ({kind}); LMDB is not safe there "
            "(stale reads, broken locks, corruption): keep dash_root on a local disk",
            RuntimeWarning, stacklevel=4)


# fork() copies only the forking thread.  A transaction another thread had
# open at that moment stays open in the child's copy of the environment,
# owned by a thread that does not exist there: py-lmdb's close() in the child
# then waits forever for that thread to end its write transaction, and an
# aborted read transaction would free the parent's reader slot under it.
# So the forking thread first takes the registry lock and every
# environment's write lock and sync lock, and holds its reads back, waiting
# for what other threads do in LMDB to end (a commit, a read, an fsync:
# short), and lets go in the parent after the fork.
#
# The spare read transaction of an environment holds a slot of the shared
# reader table too: a child that closes its copy of the environment aborts
# the spare, freeing the parent's slot under it (the parent's next read then
# fails with MDB_BAD_RSLOT).  So the parent takes its spares out for the
# fork: a transaction it holds is not aborted when the child drops it.
_held_over_fork: list[lmdb.Transaction] = []
_quiet_over_fork: list[Environment] = []


def _before_fork():
    _registry_lock.acquire()  # no environment half opened or closed
    for env in list(_all_envs):
        if env._env is None or env._stale:
            continue
        env.write_lock.acquire()  # no write transaction of another thread
        env._sync_lock.acquire()  # no sync
        env.map_guard.hold()  # no read transaction
        _quiet_over_fork.append(env)
        try:
            _held_over_fork.append(env._env.begin())
        except lmdb.Error:
            pass


def _after_fork_in_parent():
    for txn in _held_over_fork:
        txn.abort()  # back to being the spare
    _held_over_fork.clear()
    for env in _quiet_over_fork:
        env.map_guard.resume()
        env._sync_lock.release()
        env.write_lock.release()
    _quiet_over_fork.clear()
    _registry_lock.release()


def _after_fork_in_child():
    global _registry_lock
    _held_over_fork.clear()  # dropped in a child, py-lmdb leaves them alone
    _quiet_over_fork.clear()
    # Locks held at the fork by the forking thread (above) or by others (the
    # registry lock) would stay held here, where only this thread lives on.
    _registry_lock = threading.Lock()
    for env in list(_all_envs):
        env.write_lock = threading.RLock()
        env._sync_lock = threading.Lock()
        env.map_guard = MapGuard()
        if env._env is not None:
            env._stale = True


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
