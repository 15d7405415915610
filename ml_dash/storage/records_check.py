"""The checker's part for params, logs and files (see ``check.py``).

Verifies that every params and log record decodes, that log numbers run
0, 1, 2, ... without a gap, and that every file record has its contents in
``files/`` with the recorded size and sha256.  Content files that no record
points at (a process killed between writing the contents and committing
the record, or a temporary file it left) are reported, and deleted with
``repair=True`` (which holds the writer lock, so no save is under way).
A damaged or missing content file cannot be repaired: its record says what
was lost.
"""

import hashlib
import os

from ..errors import CorruptStoreError, StorageError
from . import blobs, keys
from .codec import decode_value


def check_records(env, path, report, repair, saving=False):
    """Add what is wrong with the params, logs and files of the store to ``report``.

    ``saving``: a writer is live, so a content file without a record may be
    a save under way (its contents are written before its record commits),
    not one a killed process left; such files are then not reported.
    """
    def read(txn):
        out = {}
        for name in (keys.PARAMS_DB, keys.LOGS_DB, keys.FILES_DB):
            db = env.db(name, txn)
            out[name] = [] if db is None else list(txn.cursor(db=db))
        return out

    stored = env.read(read)
    decoded: dict = {}
    for name, items in stored.items():
        decoded[name] = []
        for key, value in items:
            try:
                decoded[name].append((key, decode_value(value)))
            except CorruptStoreError as exc:
                report.problems.append(f"{name.decode()} record {key!r} cannot be decoded: {exc}")
    for position, (key, _) in enumerate(decoded[keys.LOGS_DB]):
        if key != keys.pack_index(position):
            report.problems.append(f"log records are not numbered 0, 1, 2, ...: {key!r} at {position}")
            break
    referenced = set()
    for key, record in decoded[keys.FILES_DB]:
        name = key.decode("utf-8", "replace")
        if not (isinstance(record, dict) and isinstance(record.get("id"), str)
                and isinstance(record.get("sizeBytes"), int) and isinstance(record.get("checksum"), str)):
            report.problems.append(f"file {name!r}: its record is damaged: {record!r:.200}")
            continue
        referenced.add(record["id"])
        _check_content(path, name, record, report)
    if not saving:
        _check_unreferenced(path, referenced, report, repair)


def _check_content(path, name, record, report):
    if not blobs.is_id(record["id"]):  # a crafted record: never read what it names
        report.problems.append(f"file {name!r}: its content id {record['id']!r} is not one "
                               "ml_dash makes")
        return
    content = blobs.content_path(path, record["id"])
    digest = hashlib.sha256()
    try:
        with blobs.open_content(path, record["id"], repr(name)) as handle:
            for chunk in iter(lambda: handle.read(blobs.CHUNK), b""):
                digest.update(chunk)
            size = handle.tell()
    except FileNotFoundError:
        report.problems.append(f"file {name!r}: its contents {content} are missing")
        return
    except StorageError as exc:  # a symbolic link: not followed
        report.problems.append(str(exc))
        return
    if size != record["sizeBytes"] or digest.hexdigest() != record["checksum"]:
        report.problems.append(
            f"file {name!r}: its contents {content} are damaged ({size} bytes, sha256 "
            f"{digest.hexdigest()}; the record says {record['sizeBytes']} bytes, {record['checksum']})")


def _check_unreferenced(path, referenced, report, repair):
    folder = blobs.folder(path)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    # Only what ml_dash writes there can be its leftovers: anything else (the
    # files of another run nested in this folder, say) is not ours to delete.
    for name in sorted(name for name in set(names) - referenced if blobs.written_here(folder, name)):
        text = f"{os.path.join(folder, name)} belongs to no file record (left by a killed save)"
        if repair:
            os.unlink(os.path.join(folder, name))
            report.repaired.append(f"removed {text}")
        else:
            report.problems.append(text)
