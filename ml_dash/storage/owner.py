"""Which writer owns a store: a record in ``meta`` that every commit checks.

The ``flock`` on ``writer.lock`` keeps a second writer out only while the
file is there.  Deleted (or replaced) under a live writer, it lets another
one in, and two writers each trusting their own counts write over each
other's column slots and give new streams the same id.  So a writer stores
a record of itself (a random token, its pid and host, and the identity of
its lock file) when it opens the store, and checks it in every write
transaction before it writes anything: LMDB runs one write transaction at a
time, so between that check and the commit nobody else writes.

(Rejected: comparing the inode of the held lock file with the one at its
path before each commit.  It costs a ``stat`` per flush, and a writer
arriving just after the comparison still races the commit.)
"""

import json
import os
import socket

from ..errors import WriterLockedError
from . import keys
from .lock import flock_held


def owner_record(lock):
    """The ``writer`` record of a new writer holding ``lock`` (a :class:`WriterLock`)."""
    return json.dumps({"token": os.urandom(16).hex(), "pid": os.getpid(),
                       "host": socket.gethostname(), "lock": list(lock.identity)}).encode()


def take_ownership(txn, meta, record, lock, directory):
    """Store ``record`` as the owner of the store, unless the last owner still lives."""
    refuse_if_owner_lives(txn.get(keys.WRITER_KEY, db=meta), lock, directory)
    txn.put(keys.WRITER_KEY, record, db=meta)


def refuse_if_owner_lives(stored, lock, directory):
    """Raise ``WriterLockedError`` if the writer of record ``stored`` lives without its lock file.

    Its lock file being another file than ``lock``'s (deleted or replaced
    since) that a process still ``flock``s means that writer is alive: it
    lost its lock file, it did not release the lock.  Where ``/proc/locks``
    cannot be read this is not known; a writer that got in then is found
    out by the other one's next commit, which stops it.  Repairs and
    compaction, which take the lock but write without a record, ask too.
    """
    previous = _parse(stored)
    their_lock = tuple(previous.get("lock") or ())
    if (len(their_lock) == 2 and their_lock != lock.identity
            and previous.get("host") == socket.gethostname() and flock_held(their_lock)):
        raise WriterLockedError(
            f"{directory} is being written by another live process ({_who(previous)}) whose "
            f"{lock.path} was deleted or replaced; only one writer per experiment is allowed: "
            "end that run first, or open this one with ml_dash.load() to read it")


def refuse_if_writer_lives(env, lock, directory):
    """:func:`refuse_if_owner_lives` for the record stored in ``env`` (an Environment)."""
    def stored(txn):
        meta = env.db(keys.META_DB, txn)
        return None if meta is None else txn.get(keys.WRITER_KEY, db=meta)
    refuse_if_owner_lives(env.read(stored), lock, directory)


def check_ownership(txn, meta, record, directory):
    """Raise ``WriterLockedError`` unless ``record`` is still the store's owner in ``txn``."""
    stored = txn.get(keys.WRITER_KEY, db=meta)
    if stored != record:
        raise WriterLockedError(
            f"{directory} was opened for writing by another process ({_who(_parse(stored))}) "
            f"after this one (pid={os.getpid()}), its writer.lock having been deleted or "
            "replaced: this process no longer writes it.  Nothing of this snapshot was written "
            "and everything committed before is intact; only one writer per experiment is allowed")


def _who(record):
    return f"pid={record.get('pid', 'unknown')} host={record.get('host', 'unknown')}"


def _parse(stored):
    """A stored ``writer`` record as a dict (empty if none or unreadable)."""
    try:
        record = json.loads(stored) if stored else {}
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}
