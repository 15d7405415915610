"""Reading for analysis: finding runs, ranges, joins, downsampling, tables,
export and plots.

Everything here reads through the public read methods (``load()`` views and
live streams) and the storage facade; nothing here writes.  The public
names are exported from :mod:`ml_dash`.
"""
