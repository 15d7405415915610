"""Floor: raw py-lmdb, one database per stream, marshal-encoded rows,
one write transaction per commit, ``sync=False`` (what ml_dash's default
durability also leaves to the OS between its periodic syncs)."""

import marshal
import os
import struct

import lmdb
import numpy as np

KEY = struct.Struct(">Q")
POINT_API = "txn.get(key)"


def version():
    return "lmdb " + lmdb.__version__


def _open(directory, readonly):
    return lmdb.open(os.path.join(directory, "floor.lmdb"), map_size=1 << 32, max_dbs=4,
                     sync=False, metasync=False, readonly=readonly, lock=not readonly)


class Writer:
    def __init__(self, directory, option=None):
        self.env = _open(directory, False)
        self.dbs = [self.env.open_db(name) for name in (b"train", b"eval", b"root")]
        self.staged = []

    def log(self, step, train_loss, train_accuracy, eval_loss, eval_accuracy, epoch):
        self.staged.append((KEY.pack(step), marshal.dumps((train_loss, train_accuracy)),
                            marshal.dumps((eval_loss, eval_accuracy)), marshal.dumps(epoch)))

    def commit(self):
        train, evaluate, root = self.dbs
        with self.env.begin(write=True) as txn:
            put = txn.put
            for key, a, b, c in self.staged:
                put(key, a, db=train, append=True)
                put(key, b, db=evaluate, append=True)
                put(key, c, db=root, append=True)
        self.staged = []

    def close(self):
        self.commit()
        self.env.close()


class Reader:
    def __init__(self, directory):
        self.env = lmdb.open(os.path.join(directory, "floor.lmdb"), max_dbs=4, readonly=True,
                             lock=True)
        self.dbs = {name: self.env.open_db(name.encode()) for name in ("train", "eval", "root")}

    def counts(self):
        with self.env.begin() as txn:
            return {name: txn.stat(db)["entries"] for name, db in self.dbs.items()}

    def full(self):
        with self.env.begin() as txn:
            loads = marshal.loads
            return np.array([loads(v)[0] for v in txn.cursor(self.dbs["train"]).iternext(keys=False)])

    def point(self, k):
        with self.env.begin() as txn:
            return marshal.loads(txn.get(KEY.pack(k), db=self.dbs["train"]))[0]

    def close(self):
        self.env.close()
