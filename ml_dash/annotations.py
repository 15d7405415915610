"""Changing a run's tags, description and notes after it ended, without reopening it.

Reopening a run to retag it (``with Experiment(prefix, tags=[...]).run``)
records a new launch, sets its status to ``COMPLETED`` whatever it was, and
moves its end time.  :func:`annotate` changes only those three fields of the
experiment record: status, times and launch history stay as they are.  It
takes the run's writer lock for that one commit, so it is refused while a
process writes the run (``WriterLockedError`` naming it), and the commit
goes through a session like every other write.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .errors import WriterLockedError
from .paths import no_run_message, parse_prefix, resolve_root
from .session import Session
from .storage import DATA_FILE, records
from .values import check_info


def annotate(prefix: str, *, tags: Iterable[str] | None = None, add_tags: Iterable[str] = (),
             remove_tags: Iterable[str] = (), description: str | None = None,
             notes: str | None = None, dash_root: str | None = None) -> dict:
    """Change the tags, description or notes of the run ``prefix``; returns them.

    ``tags`` replaces the tags; ``add_tags`` and ``remove_tags`` then add
    (at the end, once) and remove tags; ``description`` and ``notes``
    replace those texts (``""`` clears one).  Arguments left out are left
    as stored.  Returns ``{"tags", "description", "notes"}`` as stored.
    Raises ``FileNotFoundError`` for a run that does not exist,
    ``WriterLockedError`` while another process writes it, ``TypeError``
    for a value of the wrong type (nothing is changed then).
    """
    owner = f"annotate({prefix!r})"
    description, tags, _ = check_info(owner, description, tags)
    added = check_info(f"{owner} add_tags", tags=add_tags)[1] or []
    removed = set(check_info(f"{owner} remove_tags", tags=remove_tags)[1] or [])
    notes = check_info(owner, notes, text="notes")[0]
    dash_root = resolve_root(dash_root)
    segments, path = parse_prefix(prefix, dash_root)
    if not os.path.exists(os.path.join(path, DATA_FILE)):
        raise FileNotFoundError(no_run_message(prefix, dash_root))
    try:
        session = Session(path, sync_interval=1.0, lock_timeout=0.0)
    except WriterLockedError as exc:
        raise WriterLockedError(
            f"cannot change the tags, description or notes of {'/'.join(segments)!r} while "
            f"it is written: {exc}") from None
    try:
        record = records.stored_experiment(session.reader)
        current = list(record.get("tags") or [] if tags is None else tags)
        current += [tag for tag in dict.fromkeys(added) if tag not in current]
        record["tags"] = [tag for tag in current if tag not in removed]
        for key, value in (("description", description), ("notes", notes)):
            if value is not None:
                record[key] = value or None
        session.commit_records([records.experiment_put(record)])
    finally:
        session.close()
    return {key: record.get(key) for key in ("tags", "description", "notes")}
