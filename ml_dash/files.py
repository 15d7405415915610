"""Files of a run: checkpoints, configs, images, stored beside its metrics.

``exp.files("models")`` is a handle on a folder, ``exp.files("models/a.pt")``
on one file (a handle is a file handle when a file is stored at its path or
its last segment has a dot), and ``exp.files`` itself is the root folder.
Folder and file names are only names in records: contents live in
``files/<id>`` (see ``storage/blobs.py``), so any name is safe.  Names read
back from a store are untrusted (a run may come from anyone) and are
checked before they are used on disk (see ``_usable``).  Every save
is committed at once, with whatever else is staged, and replaces a file
stored under the same folder and name.
"""

from __future__ import annotations

import builtins
import datetime
import io
import json
import mimetypes
import os
import threading
from typing import Any

from .errors import StorageError
from .names import glob_match
from .storage import blobs, records
from .values import check_info

_UTC = datetime.timezone.utc


def clean_path(path):
    """``path`` as ``a/b/c`` (no leading, trailing or repeated slashes), or ``ValueError``."""
    if path is None:
        return ""
    path = os.fspath(path)
    if not isinstance(path, str) or "\\" in path or "\0" in path:
        raise ValueError(f"file path {path!r}: use '/'-separated text without backslashes or NUL")
    parts = [part for part in path.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise ValueError(f"file path {path!r}: '.' and '..' segments are not allowed")
    path = "/".join(parts)
    records.text_key(path, "file path")  # valid UTF-8 and short enough to be stored: else ValueError
    return path


def _join(*parts):
    return "/".join(part for part in parts if part)


def _split(path):
    folder, _, name = path.rpartition("/")
    return folder, name


def _missing(path):
    return FileNotFoundError(f"no stored file {path!r}")


def _usable(key, record, use):
    """``record`` (stored at path ``key``) once its names are safe to use on disk,
    else ``StorageError`` naming it and what it was needed for (``use``).

    A run may come from anyone: a stored path with ``..`` or a filename with
    a ``/`` would make a download write outside its target folder, a content
    id that is a path a read use a file outside the run.  Listing does not
    check: there the names are only shown.
    """
    problem = None
    if not isinstance(record, dict):
        problem = f"its record is a {type(record).__name__}, not a file record"
    elif not _is_clean(key):
        problem = "its stored path is not a plain 'folder/name' path"
    elif not (_is_clean(_filename(record)) and "/" not in record["filename"]):
        problem = f"its filename {record.get('filename')!r} is not a plain file name"
    elif not blobs.is_id(record.get("id")):
        problem = f"its content id {record.get('id')!r} is not one ml_dash makes (32 hex digits)"
    if problem:
        raise StorageError(f"stored file {key!r} cannot be {use}: {problem}; the run was "
                           "altered or not written by ml_dash")
    return record


def _is_clean(path):
    """True if ``path`` is UTF-8 text that :func:`clean_path` leaves as it is."""
    if not isinstance(path, str) or not path:
        return False
    try:
        path.encode("utf-8")
        return clean_path(path) == path
    except ValueError:  # a refused path, or a lone surrogate (UnicodeEncodeError)
        return False


def _filename(record):
    """The record's filename, or None if it has none that is text."""
    name = record.get("filename") if isinstance(record, dict) else None
    return name if isinstance(name, str) else None


def _require(module, extra, method):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"files.{method}() needs the optional '{extra}' extra: pip install 'ml-dash[{extra}]'"
        ) from None


class Files:
    """``exp.files`` (or ``view.files``): a folder or file handle of a run.

    ``owner`` is the experiment or view; ``path`` the handle's cleaned path.
    """

    def __init__(self, owner: Any, path: str = "", lock: threading.Lock | None = None) -> None:
        self._exp = owner
        self._path = path
        self._lock = lock or threading.Lock()  # one save or delete at a time per experiment

    @property
    def _directory(self):
        return self._exp.path

    def _reader(self):
        return self._exp._reader()

    def _handle(self, path):
        return Files(self._exp, path, self._lock)

    def __call__(self, path: str | None = None) -> Files:
        """A handle on the folder or file ``path`` under this one."""
        return self._handle(_join(self._path, clean_path(path)))

    # -- what the handle points at --------------------------------------------------

    def _record(self, path):
        return records.file_record(self._reader(), path)

    def _is_file(self):
        path = self._path
        return bool(path) and ("." in _split(path)[1] or self._record(path) is not None)

    def _folder(self):
        return _split(self._path)[0] if self._is_file() else self._path

    def _records(self):
        """``{stored path: record}`` of every file under the handle's folder."""
        return records.file_records(self._reader(), self._path)

    def _matches(self, pattern):
        """``{stored path: record}`` the handle stands for, filtered by ``pattern``."""
        if self._is_file() and pattern is None:
            record = self._record(self._path)
            if record is None:
                raise _missing(self._path)
            return {self._path: record}
        folder = self._folder()
        found = self._handle(folder)._records() if folder != self._path else self._records()
        if pattern is None:
            return found
        relative = len(folder) + 1 if folder else 0
        return {key: record for key, record in found.items()
                if glob_match(_filename(record) or "", pattern)
                or glob_match(key[relative:], pattern)}

    # -- public reading -------------------------------------------------------------

    def list(self, pattern: str | None = None) -> builtins.list[dict]:
        """Records of the files under this handle (a file handle: its own), by path.

        ``pattern`` is a glob on the filename (or on the path under the handle).
        """
        if self._is_file() and pattern is None:
            record = self._record(self._path)
            return [record] if record is not None else []
        return list(self._matches(pattern).values())

    def exists(self) -> bool:
        """Whether a file is stored at this path (or, for a folder, under it)."""
        if self._record(self._path) is not None:
            return True
        return not self._is_file() and bool(self._records())

    def read_bytes(self) -> bytes:
        """The stored contents of this file, checked against its sha256."""
        record = self._record(self._path)
        if record is None:
            raise _missing(self._path)
        _usable(self._path, record, "read")
        return blobs.read_verified(self._directory, record["id"], record["checksum"], repr(self._path))

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def download(self, pattern: str | None = None, to: str | None = None) -> str | builtins.list[str]:
        """Copy stored files out, each verified against its sha256.

        On a file handle without ``pattern``: to ``to`` (a file path, or a
        directory to put it in; default the current directory); returns the
        destination path.  Otherwise every match goes into the directory
        ``to`` (keeping its path under the handle); returns the paths.
        """
        if self._is_file() and pattern is None:
            record = self._record(self._path)
            if record is None:
                raise _missing(self._path)
            _usable(self._path, record, "downloaded")
            destination = to if to is not None else os.getcwd()
            if os.path.isdir(destination):
                destination = os.path.join(destination, record["filename"])
            return self._copy_out(self._path, record, os.fspath(destination))
        matches = self._matches(pattern)
        if pattern is not None and not matches:
            raise _missing(_join(self._path, pattern))
        folder = self._folder()
        relative = len(folder) + 1 if folder else 0
        target = os.fspath(to) if to is not None else os.getcwd()
        for key, record in matches.items():  # all of them first: a refused one copies nothing
            _usable(key, record, "downloaded")
        return [self._copy_out(key, record, os.path.join(target, *key[relative:].split("/")))
                for key, record in matches.items()]

    def _copy_out(self, key, record, destination):
        return blobs.copy_verified(self._directory, record["id"], record["checksum"],
                                   destination, repr(key))

    def __repr__(self) -> str:
        return f"<Files {self._path or '/'!r}>"


    # -- writing --------------------------------------------------------------------

    def _target(self, to, default_name=None):
        """The stored path a write goes to."""
        if to is not None:
            return _join(self._folder(), clean_path(to))
        if self._is_file():
            return self._path
        if default_name:
            return _join(self._path, default_name)
        raise ValueError(f"files handle {self._path or '/'!r} is a folder: give to='name'")

    def _put(self, path, source, description, tags, metadata, content_type=None):
        """Write ``source`` (a local path or bytes) as ``path``, commit its record."""
        session = self._exp._open_session()
        folder, name = _split(path)
        if not name:
            raise ValueError("a stored file needs a name: give to='name'")
        # Checked before the contents are written: nothing of a refused call stays behind.
        key = records.text_key(path, "file path")
        description, tags, metadata = check_info(f"file {path!r}", description, tags, metadata)
        file_id = blobs.new_id()
        with self._lock:
            size, checksum = blobs.write(self._directory, file_id, source)
            old = records.file_record(session.reader, path)
            record = {
                "id": file_id,
                "path": folder,
                "filename": name,
                "sizeBytes": size,
                "checksum": checksum,
                "contentType": content_type or mimetypes.guess_type(name)[0]
                or "application/octet-stream",
                "description": description,
                "tags": tags or [],
                "metadata": metadata,
                "uploadedAt": datetime.datetime.now(_UTC).isoformat().replace("+00:00", "Z"),
            }
            try:
                data = records.encode(record)
            except TypeError:
                blobs.remove(self._directory, file_id)
                raise TypeError(f"file {path!r}: metadata {metadata!r} cannot be stored") from None
            session.stage_record(records.file_put(key, data))
            session.flush()
            if isinstance(old, dict):  # superseded, and no longer referenced
                blobs.remove(self._directory, old.get("id"))  # not an id of ours: nothing removed
        return record

    def upload(self, local_path: Any, to: str | None = None, description: str | None = None,
               tags: builtins.list[str] | None = None, metadata: dict | None = None) -> dict:
        """Copy the local file in (as ``to``, default its own name); returns the record.

        The local file is only read, never moved or deleted.
        """
        local_path = os.fspath(local_path)
        if not os.path.isfile(local_path):
            raise FileNotFoundError(f"cannot upload {local_path!r}: no such file")
        path = self._target(to, os.path.basename(local_path))
        return self._put(path, local_path, description, tags, metadata)

    def save(self, content: Any, to: str | None = None, description: str | None = None,
             tags: builtins.list[str] | None = None, metadata: dict | None = None) -> dict:
        """Store ``content``: a local file path (uploaded), bytes, or a dict or list (JSON)."""
        if isinstance(content, (str, os.PathLike)):
            if not os.path.isfile(content):
                raise FileNotFoundError(
                    f"save({content!r}): no such local file; use save_text() to store a string")
            return self.upload(content, to, description, tags, metadata)
        if isinstance(content, (bytes, bytearray, memoryview)):
            return self.save_blob(content, to, description, tags, metadata)
        if isinstance(content, (dict, list)):
            return self.save_json(content, to, description, tags, metadata)
        raise TypeError(
            f"save() takes a file path, bytes, or a dict or list (stored as JSON), not "
            f"{type(content).__name__}; see save_text, save_image, save_fig, save_torch")

    def save_text(self, text: Any, to: str | None = None, description: str | None = None,
                  tags: builtins.list[str] | None = None, metadata: dict | None = None) -> dict:
        if not isinstance(text, str):
            raise TypeError(f"save_text() takes a str, not {type(text).__name__}")
        path = self._target(to)
        return self._put(path, text.encode("utf-8"), description, tags, metadata,
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
        image_module = _require("PIL.Image", "image", "save_image")
        import numpy as np
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
        elif array.dtype.kind == "b":
            array = array.astype(np.uint8) * 255
        path = self._target(to)
        image_format = _format(path, "png")
        buffer = io.BytesIO()
        image_module.fromarray(array).save(buffer, format=image_format.upper())
        return self._put(path, buffer.getvalue(), description, tags, metadata)

    def save_fig(self, fig: Any = None, to: str | None = None, description: str | None = None,
                 tags: builtins.list[str] | None = None, metadata: dict | None = None, **savefig: Any) -> dict:
        """Store a matplotlib figure (default the current one), PNG unless ``to``
        names another format.  Needs matplotlib."""
        pyplot = _require("matplotlib.pyplot", "plot", "save_fig")
        fig = fig if fig is not None else pyplot.gcf()
        path = self._target(to)
        buffer = io.BytesIO()
        fig.savefig(buffer, format=_format(path, "png"), **savefig)
        return self._put(path, buffer.getvalue(), description, tags, metadata)

    def save_torch(self, obj: Any, to: str | None = None, description: str | None = None,
                   tags: builtins.list[str] | None = None, metadata: dict | None = None) -> dict:
        """Store ``obj`` with ``torch.save`` (a model's ``state_dict()``, say).  Needs torch."""
        torch = _require("torch", "torch", "save_torch")
        path = self._target(to)
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return self._put(path, buffer.getvalue(), description, tags, metadata)

    def duplicate(self, source: dict | str, to: str) -> dict:
        """Copy a stored file (its record or ``id``) to ``to`` (``folder/name``); returns the new record."""
        file_id = source.get("id") if isinstance(source, dict) else source
        everything = self._handle("")._records()
        found = [(key, record) for key, record in everything.items()
                 if isinstance(record, dict) and record.get("id") == file_id]
        if not found:
            raise FileNotFoundError(f"no stored file with id {file_id!r}")
        key, record = found[0]
        _usable(key, record, "duplicated")
        path = _join(self._folder(), clean_path(to))
        with blobs.open_content(self._directory, record["id"], repr(key)) as contents:
            return self._put(path, contents, record.get("description"), record.get("tags"),
                               record.get("metadata"), record.get("contentType"))

    def delete(self, pattern: str | None = None) -> builtins.list[dict]:
        """Remove this file, or the files under this folder (matching ``pattern``).

        Returns the removed records; ``FileNotFoundError`` when nothing matches.
        """
        session = self._exp._open_session()
        with self._lock:
            matches = self._matches(pattern)
            if not matches:
                raise _missing(_join(self._path, pattern) if pattern else self._path or "/")
            session.stage_records([records.file_delete(key) for key in matches])
            session.flush()
            for record in matches.values():
                if isinstance(record, dict):
                    blobs.remove(self._directory, record.get("id"))  # only ids of ours
        return list(matches.values())


def _format(path, default):
    extension = os.path.splitext(path)[1].lstrip(".").lower()
    return {"jpg": "jpeg", "tif": "tiff"}.get(extension, extension) or default
