"""A PNG of a run: write cost per step and read costs, log scale.

matplotlib comes from the ``bench`` extra; without it the run still writes
its tables and says that the plot was skipped.
"""


def plot(results, path):
    """Draw the figure into ``path``; return False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    written = [r for r in results if "write_us" in r]
    read = [r for r in written if r.get("full_s") is not None]
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 0.35 * len(written) + 2))
    names = [f"{r['label']} [{r['variant']}]" for r in written]
    colours = ["tab:green" if r["kind"] == "ml_dash" else "tab:grey" if r["kind"] == "floor"
               else "tab:blue" for r in written]
    left.barh(names, [r["write_us"]["median"] for r in written], color=colours,
              xerr=[[r["write_us"]["median"] - r["write_us"]["min"] for r in written],
                    [r["write_us"]["max"] - r["write_us"]["median"] for r in written]])
    left.set_xscale("log")
    left.set_xlabel("write, microseconds per step (log)")
    left.invert_yaxis()
    labels = [f"{r['label']} [{r['variant']}]" for r in read]
    positions = range(len(read))
    right.barh([p - 0.2 for p in positions], [r["full_s"] * 1e3 for r in read], height=0.4,
               label="full read of one metric")
    right.barh([p + 0.2 for p in positions], [(r.get("random_s") or 0) * 1e3 for r in read], height=0.4,
               label="1,000 random point reads")
    right.set_yticks(list(positions), labels)
    right.set_xscale("log")
    right.set_xlabel("read, milliseconds in a new process (log)")
    right.invert_yaxis()
    right.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True
