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
import operator

import numpy as np

CHUNK = 1 << 20  # points per step: 8 MB of float64
SUB = 1024  # points per run in the two-level arg-min/max (8 KB)
FOLIO = (2 << 20) // 8  # points in the largest page-cache folio mapped at once (2 MB)
EXACT_LTTB = 1 << 20
SMALL_BUCKET = 24  # points per LTTB bucket up to which a plain Python loop is faster
METHODS = ("minmax", "lttb")


def downsample(values, n, method="minmax", x=None):
    """``(indices, values)`` of at most ``n`` points of ``values`` to draw it.

    Indices are increasing; ``x``: the points' x coordinates for ``lttb``
    (default: their index).  A column of at most ``n`` points is returned
    whole.
    """
    if method not in METHODS:
        raise ValueError(f"unknown downsampling method {method!r}; use one of {list(METHODS)}")
    try:
        if isinstance(n, bool):
            raise TypeError
        n = operator.index(n)  # int("5") and int(2.7) would pass a mistake silently
    except TypeError:
        raise TypeError(f"downsample: n must be a whole number of points, got "
                        f"{type(n).__name__} {n!r}") from None
    if n < 2:
        raise ValueError(f"downsample needs n >= 2 points, got {n}")
    if len(values) <= n:
        return np.arange(len(values), dtype=np.int64), np.array(values, dtype=np.float64)
    if method == "minmax":
        return minmax(values, n)
    return lttb(values, n, x)


def minmax(values, n):
    """``(indices, values)`` of the smallest and largest point of each of
    ``n // 2`` buckets."""
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
            picked.append(_block_extrema(block, row * width))
            release(row * width, last * width)
        if full * width < size:
            picked.append(_block_extrema(values[full * width:].reshape(1, -1), full * width))
    else:
        for start in range(0, size, width):
            picked.append(_long_bucket_extrema(values, start, min(start + width, size), release))
    release(-FOLIO, size + FOLIO)  # what chunk edges left mapped
    if not picked:
        return np.empty(0, np.int64), np.empty(0)
    indices, first = np.unique(np.concatenate([p[0] for p in picked]), return_index=True)
    return indices, np.concatenate([p[1] for p in picked])[first]


def _block_extrema(block, offset):
    """``(indices, values)`` of each row's min and max, NaN ignored; indices
    count from ``offset`` at the block's first point."""
    width = block.shape[1]
    low = _row_arg(block, np.minimum, np.argmin)
    high = _row_arg(block, np.maximum, np.argmax)
    rows = np.arange(len(block))
    low_values, high_values = block[rows, low], block[rows, high]
    # argmin/argmax stop at a NaN: redo only those rows, ignoring NaN.
    keep = np.ones(len(block), bool)
    for r in np.flatnonzero(np.isnan(low_values) | np.isnan(high_values)):
        row = block[r]
        if np.isnan(row).all():
            keep[r] = False
        else:
            low[r], high[r] = np.nanargmin(row), np.nanargmax(row)
            low_values[r], high_values[r] = row[low[r]], row[high[r]]
    starts = rows[keep] * width + offset
    return (np.concatenate([low[keep] + starts, high[keep] + starts]),
            np.concatenate([low_values[keep], high_values[keep]]))


def _row_arg(block, reduce, arg):
    """``arg(block, axis=1)`` (first position of each row's min or max; NaN
    counts as both, as numpy's argmin does), without copying the block.

    ``argmin`` is about three times slower than ``min`` on float64, so each
    row is cut into runs of ``sub`` points: the runs are reduced with
    ``reduce`` (one fast pass), the best run of each row found, and ``arg``
    run only inside it.
    """
    rows, width = block.shape
    sub = SUB
    runs = width // sub
    if runs < 4:
        return _first_equal(block, reduce.reduce(block, axis=1))
    head = block[:, :runs * sub].reshape(rows, runs, sub)
    best = arg(reduce.reduce(head, axis=2), axis=1)  # NaN propagates: its run is picked
    everywhere = np.arange(rows)
    inside = arg(head[everywhere, best], axis=1)
    found = best * sub + inside
    if runs * sub < width:  # the rest of each row, shorter than a run
        tail = block[:, runs * sub:]
        tail_at = _first_equal(tail, reduce.reduce(tail, axis=1))
        tail_value = tail[everywhere, tail_at]
        value = block[everywhere, found]
        better = reduce(tail_value, value) != value  # strictly better, or NaN only in the tail
        better &= ~np.isnan(value)
        found[better] = runs * sub + tail_at[better]
    return found


def _first_equal(block, best):
    """Position of the first value equal to ``best[row]`` in each row (the
    first NaN where ``best`` is NaN).

    Not ``argmin(axis=1)``: numpy copies a 2-D operand for it, which would
    put a whole chunk in private memory.
    """
    found = (block == best[:, None]).argmax(axis=1)
    for r in np.flatnonzero(np.isnan(best)):
        found[r] = np.isnan(block[r]).argmax()
    return found


def _long_bucket_extrema(values, start, stop, release):
    """Min and max of one bucket longer than a chunk, walked chunk by chunk."""
    indices, found = [], []
    for a in range(start, stop, CHUNK):
        b = min(a + CHUNK, stop)
        chunk_indices, chunk_values = _block_extrema(values[a:b].reshape(1, -1), a)
        indices.extend(chunk_indices.tolist())
        found.extend(chunk_values.tolist())
        release(a, b)
    if not indices:
        return np.empty(0, np.int64), np.empty(0)
    low, high = int(np.argmin(found)), int(np.argmax(found))
    return np.array([indices[low], indices[high]]), np.array([found[low], found[high]])


def lttb(values, n, x=None):
    """``(indices, values)`` of ``n`` points chosen by LTTB, plus the smallest
    and largest point."""
    if len(values) > EXACT_LTTB:
        candidates, ys = minmax(values, 8 * n)
        # The ends too: LTTB always keeps the first and last point.
        ends = [i for i in (0, len(values) - 1) if i not in (candidates[0], candidates[-1])]
        if ends:
            candidates = np.concatenate([candidates, ends])
            ys = np.concatenate([ys, take(values, ends)])
            order = np.argsort(candidates, kind="stable")
            candidates, ys = candidates[order], ys[order]
    else:
        candidates = np.flatnonzero(np.isfinite(values))
        ys = np.array(values[candidates], dtype=np.float64)
        _pager(values)(-FOLIO, len(values) + FOLIO)
    finite = np.isfinite(ys)
    if not finite.all():
        candidates, ys = candidates[finite], ys[finite]
    if len(candidates) <= n:
        return candidates, ys
    xs = candidates.astype(np.float64) if x is None else take(x, candidates)
    chosen = _lttb(xs, ys, n)
    return candidates[chosen], ys[chosen]


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
    if size <= SMALL_BUCKET * (n - 2):
        # Small buckets (as after a min/max preselection): plain Python
        # beats numpy's per-call overhead, 2-3 us per bucket against 15.
        xs, ys = x.tolist(), y.tolist()
        for i in range(n - 2):
            ax, ay = xs[a], ys[a]
            dx, dy = ax - mean_x[i + 1], mean_y[i + 1] - ay
            best = -1.0
            for b in range(bounds[i], bounds[i + 1]):
                area = abs(dx * (ys[b] - ay) - (ax - xs[b]) * dy)
                if area > best:
                    best, a = area, b
            out[i + 1] = a
    else:
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
    buckets: dict = {}
    for extreme in interior:
        buckets.setdefault(int(np.searchsorted(edges, extreme, side="right")), []).append(extreme)
    extra = []
    for slot, extremes in buckets.items():
        out[slot] = extremes[0]
        extra.extend(extremes[1:])  # both extremes in one bucket: keep both
    return np.union1d(out, extra).astype(np.int64) if extra else out


def take(values, indices):
    """``values[indices]`` as a new float64 array, leaving no pages of a map behind.

    A read of one value maps a whole page-cache folio (hundreds of KB on
    recent kernels): 2,000 scattered reads would map most of a 100M-point
    column into the process at once.  So values are gathered one span of
    ``CHUNK`` points at a time, releasing each span's pages after it.
    """
    indices = np.asarray(indices, dtype=np.int64)
    release = _pager(values)
    order = np.argsort(indices, kind="stable")
    ordered = indices[order]
    out = np.empty(len(indices), dtype=np.float64)
    if not len(indices):
        return out
    spans = np.arange(ordered[0] // CHUNK * CHUNK, ordered[-1] + CHUNK + 1, CHUNK)
    bounds = np.searchsorted(ordered, spans)
    for k in range(len(spans) - 1):
        a, b = bounds[k], bounds[k + 1]
        if a < b:
            out[order[a:b]] = values[ordered[a:b]]
            release(int(spans[k]) - FOLIO, int(spans[k + 1]) + FOLIO)
    return out


def _pager(values):
    """A ``release(i, j)`` that unmaps the pages of ``values[i:j]`` from this process.

    The pages stay in the kernel's page cache (and a later access maps them
    again); without this, a walk over a 100M-point column would end with
    800 MB mapped in the process.  A no-op unless ``values`` views a mapping.
    """
    # The mapping is an ``mmap.mmap`` or the store's own (a column map, which
    # has the same ``madvise`` and ``len``): the first base with ``madvise``.
    base = values
    while base is not None and not callable(getattr(base, "madvise", None)):
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    if base is None or not values.flags.c_contiguous:
        return lambda i, j: None
    origin = (np.frombuffer(base, dtype=np.uint8) if isinstance(base, mmap.mmap)
              else np.asarray(base)).ctypes.data
    offset = values.ctypes.data - origin
    item = values.itemsize
    page = mmap.PAGESIZE

    size = len(base)

    def release(i, j):
        begin = max(offset + i * item, 0) // page * page
        end = min(-(-(offset + j * item) // page) * page, size)
        # Widened to whole pages: a value shares its page with neighbours,
        # and a released page is simply mapped again on its next read.
        if end > begin:
            base.madvise(mmap.MADV_DONTNEED, begin, end - begin)
    return release
