"""``ml-dash sql``: a DuckDB query over the runs, printed as a table, CSV or JSON.

A thin call to :func:`ml_dash.sql`; a query DuckDB refuses is a ``ValueError``
(printed by ``cli.main`` as one line) and a missing extra an ``ImportError``
naming the command that installs it.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import sys

from . import cli_output as output


def add_commands(command):
    """Add ``sql`` with ``command(name, handler, help, description)`` of the parser."""
    sql = command("sql", _sql, "run a SQL query (DuckDB) over runs, params, metrics and logs",
                  "Run a query in DuckDB's SQL over the tables runs, params (prefix, key, value, "
                  "number, type), params_wide (one column per param), metrics (prefix, stream, "
                  "index, _ts, one column per key) and logs. Live runs show their flushed points. "
                  "Needs the 'sql' extra.")
    sql.add_argument("query", metavar="QUERY",
                     help="e.g. \"select prefix, max(loss) from metrics group by prefix\"")
    sql.add_argument("--pattern", metavar="PATTERN",
                     help="only the runs whose prefix matches this glob (e.g. 'alice/**')")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table",
                     help="table (default), csv, or json (one array of objects)")


def _sql(args):
    from .analysis.sql import sql
    relation = sql(args.query, pattern=args.pattern, dash_root=args.dash_root)
    if relation is None:  # a statement without a result
        return 0
    headers = list(relation.columns)
    rows = relation.fetchall()
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows([[_cell(v) for v in row] for row in rows])
    elif args.format == "json":
        print(json.dumps([{h: _plain(v) for h, v in zip(headers, row)} for row in rows],
                         default=str, indent=1))
    else:
        print(output.table(rows, headers))
    return 0


def _plain(value):
    """A DuckDB value as JSON and CSV write it: times as ISO text, NaN and infinities as
    None (JSON readers refuse ``NaN``), lists and structs element by element."""
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _cell(value):
    """A CSV cell: lists and structs as JSON."""
    value = _plain(value)
    return json.dumps(value, default=str) if isinstance(value, (list, dict)) else value
