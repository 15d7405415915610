"""Operating-system failures as ``StorageError``s that name their real cause.

Running out of file descriptors or memory says nothing about the store, so
its message says as much and names the limit to raise: a hint to repair the
run would send the user after damage that is not there.  Every module of the
engine that opens, maps or lists files reports through :func:`os_failure`.
"""

import errno
import os
import resource

from ..errors import StorageError

_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


def os_failure(what, exc, damage_hint=""):
    """A :class:`StorageError` for ``exc``, raised by ``what`` ("cannot map column file x").

    ``exc`` is an ``OSError``, or an ``lmdb.Error`` (which carries no errno:
    its text ends with the ``strerror``).  ``damage_hint`` is added only when
    the cause is not one of the process's limits.  The error keeps the
    ``errno`` of the cause.
    """
    code = getattr(exc, "errno", None)
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if code is None:
        code = next((c for c in (*_OUT_OF_DESCRIPTORS, errno.ENOMEM)
                     if reason.endswith(os.strerror(c))), None)
    if code in _OUT_OF_DESCRIPTORS:
        whose = "this process" if code == errno.EMFILE else "the system"
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        text = (f"{what}: {whose} ran out of file descriptors (too many open files; this "
                f"process may open {soft}, `ulimit -n`): close the views you no longer need "
                "(view.close(), or 'with load(...) as view:') or raise the limit, and try "
                "again; the store is not damaged")
    elif code == errno.ENOMEM:
        text = (f"{what}: out of memory or of memory mappings ({reason}; see "
                "vm.max_map_count): the store is not damaged")
    else:
        text = f"{what}: {reason}{damage_hint}"
    error = StorageError(text)
    error.errno = code
    return error
