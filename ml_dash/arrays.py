"""Small helpers on numpy arrays: ranges by binary search, and tables for
pandas and Arrow.

pandas and pyarrow are optional (extras ``pandas`` and ``arrow``): the
store itself needs only numpy, and a training job should not pull them in.
Ranges use a binary search (``numpy.searchsorted``) on the memory-mapped
column, so finding the points of one hour in a run of a billion touches a
few dozen pages, not the column.
"""

import importlib

import numpy as np

from .extras import missing


def index_range(values, low=None, high=None):
    """``(start, stop)``: the points whose value lies in ``[low, high)``.

    ``values`` must be non-decreasing over the points searched (``_ts`` in
    a loop that lets it default, a ``step`` or ``epoch`` counter); a column
    that is not gives a meaningless range, since checking would mean
    reading all of it.  None leaves that end open.
    """
    for name, bound in (("low", low), ("high", high)):
        if bound is not None and (isinstance(bound, (bool, str, bytes)) or not np.isscalar(bound)
                                  or not np.issubdtype(np.asarray(bound).dtype, np.number)):
            raise TypeError(f"index_range: {name} must be a number or None, got "
                            f"{type(bound).__name__} {bound!r}")
    start = 0 if low is None else int(np.searchsorted(values, low, side="left"))
    stop = len(values) if high is None else int(np.searchsorted(values, high, side="left"))
    return start, max(start, stop)


def require(module, extra, caller=None):
    """Import ``module`` or raise ``ImportError`` naming the extra that installs it
    (after ``caller``, e.g. ``"files.save_video()"``, when given)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = missing(module, extra)
        raise ImportError(f"{caller} {message}" if caller else message) from None


def frame(columns, index=None):
    """A ``pandas.DataFrame`` of ``{name: array}`` (``index`` names the index column)."""
    pd = require("pandas", "pandas")
    df = pd.DataFrame(columns, copy=False)
    return df.set_index(index) if index else df


def arrow_table(columns):
    """A ``pyarrow.Table`` of ``{name: array}``."""
    pa = require("pyarrow", "arrow")
    return pa.table({name: _arrow_column(pa, values) for name, values in columns.items()})


def _arrow_column(pa, values):
    if isinstance(values, Labels):
        return pa.DictionaryArray.from_arrays(values.codes, values.names)
    return values


class Labels:
    """A column of repeated strings, as codes into ``names`` (a category)."""

    def __init__(self, codes, names):
        self.codes = codes
        self.names = names

    def __len__(self):
        return len(self.codes)
