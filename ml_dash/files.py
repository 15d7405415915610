"""Files of a run: checkpoints, configs, images, videos, stored beside its metrics.

``exp.files("models")`` is a handle on a path, ``exp.files`` itself on the
root folder, ``exp.files(file_id=...)`` on one stored file.  What a path
stands for is decided by the call, never by a dot in its name:

- a save that names its file (``to=``, or the local file of ``upload``)
  stores it *in* the handle's folder, so ``files("checkpoints/v1.2")
  .upload("model.pt")`` stores ``checkpoints/v1.2/model.pt``; a content
  save without ``to`` stores the handle's path itself;
- a read (``download``, ``read_text``, ``delete``, ``exists``...) takes the
  file stored at the handle's path, else the files under it as a folder;
  a one-segment path that is neither may name a file by its filename
  anywhere in the run, when exactly one file has that name (the
  reference package finds ``files("model.txt")`` so).

Stored paths form a tree: a file cannot be stored where a folder of files
is, nor under a path that is a file, so that every download can recreate
them on disk.  Names are only names in records: contents live in
``files/<id>`` (see ``storage/blobs.py``), so any name is safe, and names
read back from a store are checked before they are used on disk (see
``file_paths.usable``).  Every save, update and delete is committed at once,
as a snapshot of its own (see :func:`_commit`); a save replaces a file
stored under the same path.
"""

from __future__ import annotations

import builtins
import datetime
import json
import mimetypes
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import file_contents
from .errors import StorageError
from .file_paths import clean_path, filename, has_glob, join, labels, shown, shown_all, split, split_glob, usable
from .names import glob_match
from .storage import blobs, records
from .values import check_info

_UTC = datetime.timezone.utc


def _now() -> str:
    return datetime.datetime.now(_UTC).isoformat().replace("+00:00", "Z")


def _commit(session: Any, changes: builtins.list, directory: str, written: Sequence[str] = (),
            superseded: Sequence[dict] = ()) -> None:
    """Commit the file records ``changes``, then remove the contents left without
    a record: those of the ``superseded`` records (replaced or deleted) once the
    commit is stored, the ``written`` ids (this call's new contents) when it is not.

    A snapshot of its own (``Session.commit_records``), so that a call that
    raised stored nothing.  Staging and flushing was rejected: a failed flush
    keeps its records staged, so a later flush stored a save that had raised,
    and the contents it replaced were never removed; and that flush also
    failed on any other staged point that cannot be stored.  A commit that
    raised yet is stored (its fsync failed, or an interrupt came as it
    returned) counts as stored: the record is what readers see.
    """
    commits = session.commits
    try:
        session.commit_records(changes)
    except BaseException:
        if session.commits != commits:
            _remove(directory, [record.get("id") for record in superseded])
        else:
            _remove(directory, written)
        raise
    _remove(directory, [record.get("id") for record in superseded])


def _remove(directory: str, file_ids: Iterable[Any]) -> None:
    for file_id in file_ids:
        blobs.remove(directory, file_id)  # an id not of ours (a damaged record) removes nothing


def _missing(path: str) -> FileNotFoundError:
    return FileNotFoundError(f"no stored file {path or '/'!r}")


@dataclass(frozen=True)
class _Options:
    """What ``files(path, description=, tags=, metadata=, bindrs=, dest_path=)`` gives
    a handle: the defaults of its saves and of ``update()``, ``tags`` also the filter
    of its ``list()``, ``dest_path`` the default target of its ``download()``."""
    description: str | None = None
    tags: builtins.list[str] | None = None
    metadata: dict | None = None
    bindrs: builtins.list[str] | None = None
    dest_path: str | None = None


class Files:
    """``exp.files`` (or ``view.files``): a folder or file handle of a run.

    ``owner`` is the experiment or view; ``path`` the handle's cleaned path;
    ``file_id`` set for a ``files(file_id=...)`` handle.
    """

    def __init__(self, owner: Any, path: str = "", lock: threading.Lock | None = None,
                 file_id: str | None = None, options: _Options | None = None) -> None:
        self._exp = owner
        self._path = path
        self._lock = lock or threading.Lock()  # one save or delete at a time per experiment
        self._file_id = file_id
        self._options = options or _Options()

    def __call__(self, path: Any = None, *, dir: Any = None, prefix: Any = None,
                 file_id: str | None = None, description: str | None = None,
                 tags: builtins.list[str] | None = None, metadata: dict | None = None,
                 bindrs: builtins.list[str] | None = None, dest_path: Any = None) -> Files:
        """A handle on ``path`` under this one (``dir=`` and ``prefix=`` are other names
        of it), or on the stored file ``file_id``; the other keywords are the defaults
        of the handle's saves (see :class:`_Options`)."""
        given = [value for value in (path, dir, prefix) if value is not None]
        if len(given) > 1:
            raise TypeError("files(): path, dir= and prefix= are one argument: give it once")
        sub = clean_path(given[0] if given else None)
        if file_id is not None:
            if not isinstance(file_id, str) or not file_id:
                raise TypeError(f"files(file_id=...) takes a file's id (a non-empty str), "
                                f"got {file_id!r}")
            if sub:
                raise ValueError(f"files({sub!r}, file_id={file_id!r}): give a path or a file_id, "
                                 "not both")
        owner = f"files({sub or '/'!r})"
        description, tags, metadata = check_info(owner, description, tags, metadata)
        bindrs = check_info(owner + " bindrs", tags=bindrs)[1]
        if dest_path is not None:
            dest_path = os.fspath(dest_path)
        options = _Options(description, tags, metadata, bindrs, dest_path)
        return Files(self._exp, join(self._path, sub), self._lock, file_id, options)

    def _handle(self, path: str) -> Files:
        return Files(self._exp, path, self._lock)

    def __repr__(self) -> str:
        if self._file_id is not None:
            return f"<Files file_id={self._file_id!r}>"
        return f"<Files {'/' + self._path!r}>"

    # -- what the handle stands for -------------------------------------------------

    @property
    def _directory(self):
        return self._exp.path

    def _reader(self):
        return self._exp._reader()

    def _records(self, folder: str | None = None, limit: int | None = None) -> dict:
        """``{stored path: record}`` of every file under ``folder`` (default the handle's)."""
        return records.file_records(self._reader(), self._path if folder is None else folder, limit)

    def _found(self) -> tuple[str, Any] | None:
        """``(stored path, record)`` of the one file this handle names, or None.

        ``FileNotFoundError`` for a ``file_id`` no file has; ``ValueError`` for a
        filename that more than one stored file has.
        """
        if self._file_id is not None:
            for key, record in self._records("").items():
                if isinstance(record, dict) and record.get("id") == self._file_id:
                    return key, record
            raise FileNotFoundError(f"no stored file has file_id {self._file_id!r}")
        path = self._path
        if not path:
            return None
        record = records.file_record(self._reader(), path)
        if record is not None:
            return path, record
        if "/" in path or self._records(limit=1):
            return None
        named = [(key, record) for key, record in self._records("").items()
                 if filename(record) == path]
        if len(named) > 1:
            raise ValueError(f"{path!r} is the filename of {len(named)} stored files "
                             f"({', '.join(key for key, _ in named)}): give its whole path")
        return named[0] if named else None

    def _file(self) -> tuple[str, dict]:
        """:meth:`_found`, or ``FileNotFoundError`` naming the path."""
        found = self._found()
        if found is None:
            raise _missing(self._path)
        return found

    def _glob(self, pattern: str) -> tuple[str, dict]:
        """``(folder, {stored path: record})`` of the files under this handle that
        ``pattern`` matches: its leading literal segments name a folder, the rest
        is matched against each filename or the path under that folder."""
        literal, rest = split_glob(pattern)
        folder = join(self._path, literal)
        start = len(folder) + 1 if folder else 0
        found = {key: record for key, record in self._records(folder).items()
                 if glob_match(filename(record) or "", rest) or glob_match(key[start:], rest)}
        return folder, found

    # -- reading --------------------------------------------------------------------

    def list(self, pattern: str | None = None) -> builtins.list[dict]:
        """Records of the files under this handle (a file handle: its own), by path.

        ``pattern`` is a glob on the filename or on the path under the handle
        (``"*.png"``, ``"images/*.png"``, ``"**/*.json"``).  A handle made with
        ``tags=`` (or ``bindrs=``) lists only the files that have one of them.
        """
        if pattern is None:
            found = self._found() if self._path or self._file_id is not None else None
            matches = dict([found]) if found is not None else self._records()
        else:
            matches = self._glob(pattern)[1]
        tags, bindrs = set(self._options.tags or ()), set(self._options.bindrs or ())
        if tags or bindrs:
            matches = {key: record for key, record in matches.items()
                       if (not tags or tags & set(labels(record, "tags")))
                       and (not bindrs or bindrs & set(labels(record, "bindrs")))}
        return shown_all(builtins.list(matches.values()))

    def exists(self) -> bool:
        """Whether a file is stored at this path (or, for a folder, under it)."""
        try:
            return self._found() is not None or (self._file_id is None and bool(self._records(limit=1)))
        except FileNotFoundError:  # an unknown file_id
            return False
        except ValueError:  # a filename that several files have
            return True

    def read_bytes(self) -> bytes:
        """The stored contents of this file, checked against its sha256."""
        key, record = self._file()
        usable(key, record, "read")
        return blobs.read_verified(self._directory, record["id"], record["checksum"], repr(key))

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def download(self, pattern: str | None = None, to: Any = None) -> str | builtins.list[str]:
        """Copy stored files out, each verified against its sha256.

        The file this handle names (or the one ``pattern`` names, a path with no
        glob character): to ``to`` (a file path, or a directory to put it in;
        default the handle's ``dest_path``, else the current directory); returns
        the destination path.  A folder, or a glob ``pattern``: every file into
        the directory ``to``, keeping its path under the folder; returns the paths.
        """
        to = os.fspath(to) if to is not None else self._options.dest_path
        if pattern is not None and not has_glob(pattern):
            return self(pattern).download(to=to)
        if pattern is None:
            found = self._found()
            if found is not None:
                key, record = found
                usable(key, record, "downloaded")
                destination = to if to is not None else os.getcwd()
                if os.path.isdir(destination) or destination.endswith(os.sep):
                    destination = os.path.join(destination, record["filename"])
                return self._copy_out(key, record, destination)
            folder, matches = self._path, self._records()
            if not matches:
                raise _missing(self._path)
        else:
            folder, matches = self._glob(pattern)
            if not matches:
                raise FileNotFoundError(f"no stored file under {'/' + self._path!r} matches "
                                        f"the pattern {pattern!r}")
        start = len(folder) + 1 if folder else 0
        target = to if to is not None else os.getcwd()
        for key, record in matches.items():  # all of them first: a refused one copies nothing
            usable(key, record, "downloaded")
        return [self._copy_out(key, record, os.path.join(target, *key[start:].split("/")))
                for key, record in matches.items()]

    def _copy_out(self, key: str, record: dict, destination: str) -> str:
        return blobs.copy_verified(self._directory, record["id"], record["checksum"],
                                   destination, repr(key))

    # -- writing --------------------------------------------------------------------

    def _target(self, to: Any, default_name: str | None = None) -> str:
        """The stored path a save goes to: ``to`` (or ``default_name``) in this folder,
        else the handle's own path."""
        if self._file_id is not None:
            raise ValueError(f"files(file_id={self._file_id!r}) stands for a stored file: it reads, "
                             "updates and deletes it; save with files('folder') instead")
        if to is not None:
            name = clean_path(to, "to= file path")
            if not name:
                raise ValueError(f"to={to!r} names no file: give to='name'")
            return join(self._path, name)
        if default_name:
            return join(self._path, default_name)
        if self._path:
            return self._path
        raise ValueError("files handle '/' is the root folder: give to='name'")

    def _put(self, path: str, source: Any, description: str | None = None,
             tags: builtins.list[str] | None = None, metadata: dict | None = None,
             content_type: str | None = None, expected: str | None = None) -> dict:
        """Write ``source`` (a local path, an open file or bytes) as ``path``, commit its
        record and return it.  ``description``, ``tags`` and ``metadata`` default to the
        handle's; ``expected``, if given, is the sha256 the stored bytes must have."""
        session = self._exp._open_session()
        folder, name = split(path)
        # Checked before the contents are written: nothing of a refused call stays behind.
        key = records.text_key(path, "file path")
        given = self._options
        description, tags, metadata = check_info(
            f"file {path!r}", given.description if description is None else description,
            given.tags if tags is None else tags, given.metadata if metadata is None else metadata)
        record = {"path": "/" + folder, "filename": name,
                  "contentType": content_type or file_contents.content_type(name),
                  "description": description, "tags": tags or [], "bindrs": given.bindrs or [],
                  "metadata": metadata}
        try:
            records.encode(record)
        except TypeError:
            raise TypeError(f"file {path!r}: metadata {metadata!r} cannot be stored") from None
        file_id = blobs.new_id()
        with self._lock:
            clash = records.file_tree_clash(session.reader, path)
            if clash == path:
                raise ValueError(f"cannot store a file at {path!r}: it is a folder of stored files; "
                                 "give a name in it with to='name'")
            if clash is not None:
                raise ValueError(f"cannot store {path!r}: {clash!r} is a stored file, not a folder "
                                 f"(to replace it, save to {split(clash)[0] or '/'!r} with "
                                 f"to={split(clash)[1]!r})")
            size, checksum = blobs.write(self._directory, file_id, source)
            if expected is not None and checksum != expected:
                blobs.remove(self._directory, file_id)
                raise StorageError(f"file {path!r} was not stored: its source is damaged (sha256 "
                                   f"{checksum}, its record says {expected})")
            record = {"id": file_id, **record, "sizeBytes": size, "checksum": checksum,
                      "uploadedAt": _now()}
            old = records.file_record(session.reader, path)
            _commit(session, [records.file_put(key, records.encode(record))], self._directory,
                    written=[file_id], superseded=[old] if isinstance(old, dict) else [])
        return shown(record)

    def upload(self, local_path: Any, to: str | None = None, description: str | None = None,
               tags: builtins.list[str] | None = None, metadata: dict | None = None) -> dict:
        """Copy the local file into this folder (as ``to``, default its own name);
        returns the record.  The local file is only read, never moved or deleted."""
        try:
            local_path = os.fspath(local_path)
        except TypeError:
            raise TypeError(f"upload(local_path=...) takes a path, got {type(local_path).__name__}") from None
        if os.path.isdir(local_path):
            raise IsADirectoryError(f"upload(local_path={local_path!r}): a directory, not a file")
        if not os.path.isfile(local_path):
            raise FileNotFoundError(f"upload(local_path={local_path!r}): no such file")
        path = self._target(to, os.path.basename(local_path))
        return self._put(path, local_path, description, tags, metadata)

    def save(self, content: Any = None, to: str | None = None, description: str | None = None,
             tags: builtins.list[str] | None = None, metadata: dict | None = None) -> dict:
        """Store ``content``: a local file path (uploaded), bytes, a dict or list (JSON),
        or a numpy array (an image)."""
        if isinstance(content, (str, os.PathLike)):
            if not os.path.isfile(content):
                raise FileNotFoundError(
                    f"save({content!r}): no such local file; use save_text() to store a string")
            return self.upload(content, to, description, tags, metadata)
        if isinstance(content, (bytes, bytearray, memoryview)):
            return self.save_blob(content, to, description, tags, metadata)
        if isinstance(content, (dict, list)):
            return self.save_json(content, to, description, tags, metadata)
        if type(content).__module__ == "numpy" and hasattr(content, "shape"):
            return self.save_image(content, to, description, tags, metadata)
        raise TypeError(
            f"save(content=...) takes a file path, bytes, a dict or list (stored as JSON) or a numpy "
            f"array (an image), not {type(content).__name__}; see save_text, save_fig, save_torch, "
            "save_pkl, save_video")

    def save_text(self, text: Any, to: str | None = None, description: str | None = None,
                  tags: builtins.list[str] | None = None, metadata: dict | None = None) -> dict:
        if not isinstance(text, str):
            raise TypeError(f"save_text() takes a str, not {type(text).__name__}")
        path = self._target(to)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate, from a bad decode upstream
            raise ValueError(f"save_text() to {path!r}: the text is not valid UTF-8 (a lone surrogate "
                             f"{exc.object[exc.start:exc.end]!r} at position {exc.start}, as "
                             "os.fsdecode makes of undecodable bytes), which cannot be stored; "
                             "decode it with errors='replace'") from None
        return self._put(path, data, description, tags, metadata,
                         mimetypes.guess_type(path)[0] or "text/plain")

    def save_json(self, obj: Any, to: str | None = None, description: str | None = None,
                  tags: builtins.list[str] | None = None, metadata: dict | None = None) -> dict:
        try:
            data = json.dumps(obj, indent=2).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise TypeError(f"save_json(): cannot encode {type(obj).__name__} as JSON: {exc}") from None
        return self._put(self._target(to), data, description, tags, metadata, "application/json")

    def save_blob(self, data: Any, to: str | None = None, description: str | None = None,
                  tags: builtins.list[str] | None = None, metadata: dict | None = None) -> dict:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"save_blob() takes bytes, not {type(data).__name__}")
        return self._put(self._target(to), bytes(data), description, tags, metadata)

    def save_image(self, array: Any, to: str | None = None, description: str | None = None,
                   tags: builtins.list[str] | None = None, metadata: dict | None = None) -> dict:
        """Store a numpy array (H x W, H x W x 3 or 4; floats in [0, 1] are scaled)
        as an image, PNG unless ``to`` names another format.  Needs Pillow."""
        path = self._target(to)
        return self._put(path, file_contents.image_bytes(array, path), description, tags, metadata)

    def save_fig(self, fig: Any = None, to: str | None = None, description: str | None = None,
                 tags: builtins.list[str] | None = None, metadata: dict | None = None, **savefig: Any) -> dict:
        """Store a matplotlib figure (default the current one), PNG unless ``to``
        names another format, and close it.  Needs matplotlib."""
        path = self._target(to)
        data = file_contents.figure_bytes(fig, path, savefig)
        return self._put(path, data, description, tags, metadata)

    def save_torch(self, obj: Any, to: str | None = None, description: str | None = None,
                   tags: builtins.list[str] | None = None, metadata: dict | None = None) -> dict:
        """Store ``obj`` with ``torch.save`` (a model's ``state_dict()``, say).  Needs torch."""
        path = self._target(to)
        return self._put(path, file_contents.torch_bytes(obj), description, tags, metadata)

    def save_pkl(self, obj: Any, to: str | None = None, description: str | None = None,
                 tags: builtins.list[str] | None = None, metadata: dict | None = None) -> dict:
        """Store ``obj`` pickled.  Only unpickle files of runs you trust."""
        path = self._target(to)
        return self._put(path, file_contents.pickle_bytes(obj), description, tags, metadata,
                         "application/octet-stream")

    def save_video(self, frame_stack: Any, to: str | None = None, fps: float = 20,
                   description: str | None = None, tags: builtins.list[str] | None = None,
                   metadata: dict | None = None, **encoder: Any) -> dict:
        """Store frames (a list of H x W [x 3|4] arrays, or one N x H x W [x C] array;
        floats in [0, 1] or uint8) as a video in ``to``'s format: mp4, gif, webm...
        ``encoder`` options go to imageio (``quality``, ``codec``, ``bitrate``).
        Needs the ``video`` extra (imageio and imageio-ffmpeg, which ships ffmpeg)."""
        path = self._target(to)
        data = file_contents.video_bytes(frame_stack, path, fps, encoder)
        return self._put(path, data, description, tags, metadata)

    def duplicate(self, source: Any, to: str) -> dict:
        """Copy a stored file (its record or its ``id``) to ``to``, a path from the run's
        root (``"models/latest.pt"``) whatever this handle's path; returns the new record.

        The copy has its own contents (sharing them was rejected: deleting one
        file would need a count of the records that point at them), verified
        against the source's sha256.  Its description, tags and metadata are the
        source's unless this handle gives others.
        """
        file_id = source.get("id") if isinstance(source, dict) else source
        if not isinstance(file_id, str) or not file_id:
            raise ValueError(f"duplicate(source=...): source must be a file id (str) or a file "
                             f"record with its 'id', got {source!r}")
        path = clean_path(to, "to= file path")
        if not path:
            raise ValueError(f"duplicate(to={to!r}): give the new file's path, e.g. 'models/latest.pt'")
        key, record = Files(self._exp, "", self._lock, file_id)._file()
        usable(key, record, "duplicated")
        with blobs.open_content(self._directory, record["id"], repr(key)) as contents:
            info = {name: getattr(self._options, name) for name in ("description", "tags", "metadata")}
            for name, value in info.items():
                if value is None:  # the handle gives none: the source's
                    info[name] = record.get(name)
            return self._put(path, contents, info["description"], info["tags"], info["metadata"],
                             record.get("contentType"), record["checksum"])

    def update(self, description: str | None = None, tags: builtins.list[str] | None = None,
               metadata: dict | None = None) -> dict:
        """Replace the description, tags or metadata of the file this handle names
        (given here, else the handle's own); returns the updated record."""
        session = self._exp._open_session()
        given = self._options
        changes = {name: value for name, value in (
            ("description", given.description if description is None else description),
            ("tags", given.tags if tags is None else tags),
            ("metadata", given.metadata if metadata is None else metadata)) if value is not None}
        if not changes:
            raise ValueError("update() needs description=, tags= or metadata= (here or in files(...))")
        with self._lock:
            key, record = self._file()
            usable(key, record, "updated")
            description, tags, metadata = check_info(f"file {key!r}", changes.get("description"),
                                                     changes.get("tags"), changes.get("metadata"))
            checked = {"description": description, "tags": tags, "metadata": metadata}
            record = dict(record, **{name: checked[name] for name in changes}, updatedAt=_now())
            _commit(session, [records.file_put(key.encode("utf-8"), records.encode(record))],
                    self._directory)
        return shown(record)

    def delete(self, pattern: str | None = None) -> dict | builtins.list[dict]:
        """Remove the file this handle (or the path ``pattern``) names, returning its
        record with ``deletedAt``; or the files under this folder (matching the glob
        ``pattern``), returning the list of them.  ``FileNotFoundError`` when nothing
        matches; the root folder needs a pattern (``"**"`` is every file)."""
        session = self._exp._open_session()
        if pattern is not None and not has_glob(pattern):
            return self(pattern).delete()
        with self._lock:
            found = self._found() if pattern is None else None
            if found is not None:
                matches = dict([found])
            elif pattern is not None:
                matches = self._glob(pattern)[1]
            elif not self._path:
                raise ValueError("files.delete() on the root folder needs a path or a pattern "
                                 "(delete('**') removes every file)")
            else:
                matches = self._records()
            if not matches:
                raise FileNotFoundError(f"no stored file under {'/' + self._path!r} matches the "
                                        f"pattern {pattern!r}") if pattern else _missing(self._path)
            _commit(session, [records.file_delete(key) for key in matches], self._directory,
                    superseded=[record for record in matches.values() if isinstance(record, dict)])
        deleted = _now()
        removed = [dict(shown(record), deletedAt=deleted) if isinstance(record, dict) else record
                   for record in matches.values()]
        return removed[0] if found is not None else removed


class Bindrs(builtins.list):
    """``exp.bindrs``: the run's bindrs, a list as the reference documents it, which,
    called with a name, is the handle of the files filed under that bindr:
    ``exp.bindrs("best").list()`` lists them, ``exp.bindrs("best").save_text(...)``
    files a new one there (a bindr spans folders, as a tag does).

    A list subclass rather than a method, so that both of the reference's uses
    of ``exp.bindrs`` (read as a list, called with a name) keep working.
    """

    def __init__(self, names: builtins.list[str], files: Files) -> None:
        super().__init__(names)
        self._files = files

    def __call__(self, name: str) -> Files:
        if not isinstance(name, str) or not name:
            raise TypeError(f"bindrs(name) takes a bindr's name (a non-empty str), got {name!r}")
        return self._files(bindrs=[name])
