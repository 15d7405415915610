"""Downsampling a column for plots, on its memory map.

A 100,000,000-point column is 800 MB; a plot needs a few thousand points.
Both methods here walk the mapped column in chunks of ``CHUNK`` points and
never copy it whole: only the pages of the chunk at hand are mapped at a
time (the ones behind it are handed back to the kernel, which keeps them
in its page cache), so memory stays at a few MB whatever the length.

``minmax``: the column is cut into ``n // 2`` equal buckets and the smallest
and largest point of each is kept, so every peak and dip is drawn exactly.

``lttb``: Largest-Triangle-Three-Buckets (Steinarsson, 2013) keeps, per
bucket, the point that makes the largest triangle with the point kept
before and the mean of the bucket after: the shape of the curve with ``n``
points.  Up to ``EXACT_LTTB`` points it runs on the points themselves;
beyond, on a min/max preselection of ``8 * n`` candidates (the MinMaxLTTB
of Van Der Donckt et al., 2023), since LTTB's bucket-by-bucket loop cannot
be vectorized and would otherwise touch every point in Python-driven steps.
Either way the smallest and largest points are kept.

NaN points (where a point lacks the key) are skipped.
"""

import mmap

import numpy as np

CHUNK = 1 << 20  # points per step: 8 MB of float64
EXACT_LTTB = 1 << 20
METHODS = ("minmax", "lttb")


def downsample(values, n, method="minmax", x=None):
    """Increasing indices of at most ``n`` points of ``values`` to draw it.

    ``x``: the points' x coordinates for ``lttb`` (default: their index).
    A column of at most ``n`` points is returned whole.
    """
    if method not in METHODS:
        raise ValueError(f"unknown downsampling method {method!r}; use one of {list(METHODS)}")
    n = int(n)
    if n < 2:
        raise ValueError(f"downsample needs n >= 2 points, got {n}")
    if len(values) <= n:
        return np.arange(len(values), dtype=np.int64)
    if method == "minmax":
        return minmax(values, n)
    return lttb(values, n, x)


def minmax(values, n):
    """Indices of the smallest and largest point of each of ``n // 2`` buckets."""
    size = len(values)
    buckets = max(n // 2, 1)
    width = -(-size // buckets)  # ceil: the last bucket may be shorter
    release = _pager(values)
    picked = []
    if width <= CHUNK:
        rows = max(CHUNK // width, 1)
        full = size // width
        for row in range(0, full, rows):
            last = min(row + rows, full)
            block = values[row * width:last * width].reshape(-1, width)
            picked.append(_block_extrema(block) + row * width)
            release(row * width, last * width)
        if full * width < size:
            picked.append(_block_extrema(values[full * width:].reshape(1, -1)) + full * width)
    else:
        for start in range(0, size, width):
            picked.append(_long_bucket_extrema(values, start, min(start + width, size), release))
    return np.unique(np.concatenate(picked)) if picked else np.empty(0, np.int64)


def _block_extrema(block):
    """Indices (in the flattened block) of each row's min and max, NaN ignored."""
    width = block.shape[1]
    low = block.argmin(axis=1)
    high = block.argmax(axis=1)
    rows = np.arange(len(block))
    # argmin/argmax stop at a NaN: redo only those rows, ignoring NaN.
    nan_rows = np.flatnonzero(np.isnan(block[rows, low]) | np.isnan(block[rows, high]))
    keep = np.ones(len(block), bool)
    for r in nan_rows:
        row = block[r]
        if np.isnan(row).all():
            keep[r] = False
        else:
            low[r], high[r] = np.nanargmin(row), np.nanargmax(row)
    offsets = rows * width
    return np.concatenate([(low + offsets)[keep], (high + offsets)[keep]])


def _long_bucket_extrema(values, start, stop, release):
    """Min and max indices of one bucket longer than a chunk, walked chunk by chunk."""
    best = []  # (index, value) candidates: each chunk's min and max
    for a in range(start, stop, CHUNK):
        b = min(a + CHUNK, stop)
        found = _block_extrema(values[a:b].reshape(1, -1))
        best.extend((a + i, values[a + i]) for i in found)
        release(a, b)
    if not best:
        return np.empty(0, np.int64)
    low = min(best, key=lambda item: item[1])[0]
    high = max(best, key=lambda item: item[1])[0]
    return np.array([low, high], dtype=np.int64)


def lttb(values, n, x=None):
    """Indices of ``n`` points chosen by LTTB, plus the smallest and largest point."""
    if len(values) > EXACT_LTTB:
        # The ends too: LTTB always keeps the first and last point.
        candidates = np.union1d(minmax(values, 8 * n), [0, len(values) - 1])
    else:
        candidates = np.flatnonzero(np.isfinite(values))
    ys = np.asarray(values[candidates], dtype=np.float64)
    finite = np.isfinite(ys)
    if not finite.all():
        candidates, ys = candidates[finite], ys[finite]
    xs = candidates.astype(np.float64) if x is None else np.asarray(x[candidates], dtype=np.float64)
    if len(candidates) <= n:
        return candidates
    chosen = _lttb(xs, ys, n)
    return candidates[chosen]


def _lttb(x, y, n):
    """LTTB over the points ``(x, y)``: indices of ``n`` of them, increasing."""
    size = len(y)
    edges = np.linspace(1, size - 1, n - 1).astype(np.int64)  # n - 2 buckets between the ends
    cx, cy = np.concatenate(([0.0], np.cumsum(x))), np.concatenate(([0.0], np.cumsum(y)))
    counts = np.diff(edges)
    mean_x = ((cx[edges[1:]] - cx[edges[:-1]]) / counts).tolist() + [float(x[-1])]
    mean_y = ((cy[edges[1:]] - cy[edges[:-1]]) / counts).tolist() + [float(y[-1])]
    bounds = edges.tolist()
    out = np.empty(n, dtype=np.int64)
    out[0], out[-1] = 0, size - 1
    a = 0
    for i in range(n - 2):
        lo, hi = bounds[i], bounds[i + 1]
        ax, ay = float(x[a]), float(y[a])
        nx, ny = mean_x[i + 1], mean_y[i + 1]
        area = np.abs((ax - nx) * (y[lo:hi] - ay) - (ax - x[lo:hi]) * (ny - ay))
        a = lo + int(area.argmax())
        out[i + 1] = a
    # Keep the extremes: each replaces the point chosen in its own bucket
    # (out[k] holds bucket k - 1, and edges[k - 1] <= index < edges[k]).
    interior = [int(i) for i in (y.argmin(), y.argmax()) if 0 < i < size - 1]
    buckets = {}
    for extreme in interior:
        buckets.setdefault(int(np.searchsorted(edges, extreme, side="right")), []).append(extreme)
    extra = []
    for slot, extremes in buckets.items():
        out[slot] = extremes[0]
        extra.extend(extremes[1:])  # both extremes in one bucket: keep both
    return np.union1d(out, extra).astype(np.int64) if extra else out


def _pager(values):
    """A ``release(i, j)`` that unmaps the pages of ``values[i:j]`` from this process.

    The pages stay in the kernel's page cache (and a later access maps them
    again); without this, a walk over a 100M-point column would end with
    800 MB mapped in the process.  A no-op unless ``values`` views an mmap.
    """
    base = values
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is None or not hasattr(base, "madvise") or not values.flags.c_contiguous:
        return lambda i, j: None
    origin = np.frombuffer(base, dtype=np.uint8).ctypes.data
    offset = values.ctypes.data - origin
    item = values.itemsize
    page = mmap.PAGESIZE

    def release(i, j):
        begin = -(-(offset + i * item) // page) * page
        end = (offset + j * item) // page * page
        if end > begin:
            base.madvise(mmap.MADV_DONTNEED, begin, end - begin)
    return release
