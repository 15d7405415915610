"""Regenerate docs/cli.md from the command line's --help texts.

    python docs/make_cli_md.py

tests/test_docs.py regenerates it in memory and fails when the file differs.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from ml_dash.cli import build_parser  # noqa: E402
from ml_dash.cli_output import reference  # noqa: E402

PATH = os.path.join(HERE, "cli.md")

INTRO = """\
`ml-dash` (also `python -m ml_dash`) lists, inspects, follows, exports, plots, checks,
compacts, moves and removes runs. Every command takes `--dash-root DIR` (default `.dash`). The root stream is named
`.` (or `''`, `root`, `(root)`) where a STREAM is asked for, and shown as `(root)`. Errors (an unknown run, stream or key)
print one line with the close matches and exit with status 1.

Examples:

```bash
ml-dash ls 'alice/**'                                  # runs, status, points per stream
ml-dash show alice/mnist/lr-0.1
ml-dash read alice/mnist/lr-0.1 train --tail 20 -f     # the last 20 points, then follow
ml-dash export alice/mnist/lr-0.1 -o run.csv --progress
ml-dash plot alice/mnist/lr-0.1 train loss --compare 'alice/mnist/*' -o loss.png
ml-dash plot alice/mnist/lr-0.1 train loss --x _ts --smooth 0.9 --log-y -o loss.png
ml-dash check 'alice/**'                               # every run under alice/
ml-dash mv alice/mnist/lr-0.1 alice/mnist/best         # only once the run has ended
ml-dash rm alice/mnist/lr-0.01
```

`ml-dash read -f` may be started before the run: it waits for the run, then for the stream.
`mv` and `rm` refuse a run whose writer is alive, and a kill leaves the run whole under one
prefix (or, for `rm`, gone). Pictures of what `plot` draws: [Python API](python-api.md#plots).
"""


def render():
    text = reference(build_parser())
    title, rest = text.split("\n", 1)
    return f"{title}\n\n{INTRO}{rest}"


if __name__ == "__main__":
    with open(PATH, "w") as f:
        f.write(render())
    print(f"wrote {PATH}")
