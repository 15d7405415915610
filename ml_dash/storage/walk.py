"""Reads every page of an LMDB environment; run as a script in a child process.

A byte changed in one of LMDB's own page headers (not in a value) can make
LMDB's C code abort or fault while it walks the tree, which no Python code
can catch.  :func:`ml_dash.check` therefore first walks the whole file here,
in a separate process (``python walk.py <directory> <map size>``): exit
status 0 means every sub-database and every value could be read,
:data:`DAMAGED` that LMDB reported an error (printed), and death by a
signal that the file is damaged beyond what LMDB checks.  Only then does the checker read the store
itself.

Run by path, not as ``-m ml_dash...``, so that the child imports ``lmdb``
and nothing else: it starts in a few tens of milliseconds.
"""

import sys

import lmdb

DAMAGED = 3  # exit status; 1 would be any uncaught Python error


def walk(directory, map_size):
    """Touch every key and value of every sub-database; returns how many were read."""
    env = lmdb.open(directory, readonly=True, lock=True, max_dbs=1 << 15, max_readers=1024,
                    map_size=map_size, subdir=True, readahead=False)
    read = 0
    try:
        with env.begin(buffers=True) as txn:
            names = [bytes(key) for key, _ in txn.cursor()]
        for name in names:
            db = env.open_db(name, create=False)
            with env.begin(db=db, buffers=True) as txn:
                for key, value in txn.cursor():
                    len(key), bytes(value[-1:])  # the last byte: every overflow page mapped
                    read += 1
    finally:
        env.close()
    return read


def main(argv):
    try:
        walk(argv[1], int(argv[2]))
    except lmdb.Error as exc:
        print(f"{type(exc).__name__}: {exc}", flush=True)
        return DAMAGED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
