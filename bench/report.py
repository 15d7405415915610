"""Markdown for a benchmark run: the table, the must-reach verdicts, the notes."""

BASELINE = {"A": "ml_dash-A", "B": "ml_dash-B"}


def _ms(seconds):
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:,.1f}" if ms >= 10 else f"{ms:.2f}" if ms >= 0.1 else f"{ms:.3f}"


def _us(value):
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def variants(result):
    return ("A", "B") if result["variant"] == "A/B" else (result["variant"],)


def write_cell(result):
    w = result["write_us"]
    return f"{_us(w['median'])} ({_us(w['min'])}-{_us(w['max'])})"


def random_cell(result):
    if not result.get("random_api") and result.get("random_s") is None:
        return "-"
    if result.get("random_s") is None:
        return f"no API ({result['random_api']})"
    cell = _ms(result["random_s"])
    if result.get("random_extrapolated_from"):
        cell += f" (~, from {result['random_extrapolated_from']} reads)"
    return cell


def live_cell(result):
    live = result.get("live")
    if not live:
        return "-"
    if "polls" not in live:
        return "no: " + live.get("live", live.get("error", "?"))[:80]
    if live["errors"] and not live["seen"]:
        return "no: " + live["errors"][0][:80]
    text = f"yes, {live['consistent']}/{live['polls']} polls consistent"
    if live["errors"]:
        text += f"; {len(live['errors'])} failed: {live['errors'][0][:60]}"
    return text


def row(result):
    name = result["label"] + (f" ({result['steps']:,} steps)" if result.get("capped") else "")
    if result.get("errors") and "write_us" not in result:
        return f"| {name} | {result['variant']} | {result.get('version', '-')} | " \
               f"**{'; '.join(result['errors'])[:200]}** | | | | | | | | |"
    rss = f"{result['rss_mib']:.0f}"
    if result.get("helper_rss_mib"):
        rss += f" + {result['helper_rss_mib']:.0f} helpers"
    reads = "open_s" in result
    check = "ok" if not result.get("errors") else "**" + "; ".join(result["errors"])[:160] + "**"
    if not reads:
        check = "write only" if not result.get("errors") else check
    return (f"| {name} | {result['variant']} | {result.get('version', '-')} | {write_cell(result)} | "
            f"{rss} | {result['disk_bytes_per_step']:.0f} | "
            f"{_ms(result.get('open_s')) if reads else '-'} | {_ms(result.get('full_s')) if reads else '-'} | "
            f"{random_cell(result) if reads else '-'} | {live_cell(result)} | {check} |")


HEADER = ("| system | commits | version | write us/step, median (min-max) | peak RSS MiB | disk B/step "
          "| open ms | full read of one metric (open included), ms | 1,000 random point reads, ms | read while written "
          "| points read back |\n|---|---|---|---|---|---|---|---|---|---|---|")


def table(results):
    return "\n".join([HEADER] + [row(r) for r in results])


def verdicts(results):
    """Must-reach lines: ml_dash against every peer with the same commit frequency."""
    by_key = {r["key"]: r for r in results}
    lines = []
    for variant, key in BASELINE.items():
        ours = by_key.get(key)
        if not ours or "write_us" not in ours:
            continue
        for peer in results:
            if peer["kind"] != "peer" or variant not in variants(peer):
                continue
            if "write_us" not in peer:
                lines.append(f"- {peer['label']} ({variant}): not measured ({'; '.join(peer['errors'])[:120]})")
                continue
            ratio = peer["write_us"]["median"] / ours["write_us"]["median"]
            mark = "met" if ratio > 1 else "**not met**"
            lines.append(f"- write, variant {variant}, vs {peer['label']}: ml_dash "
                         f"{_us(ours['write_us']['median'])} us vs {_us(peer['write_us']['median'])} us "
                         f"= {ratio:.1f}x faster: {mark}")
    ours = by_key.get("ml_dash-A")
    if ours and "full_s" in ours:
        for peer in results:
            if peer["kind"] != "peer":
                continue
            for what, name in (("full_s", "full read"), ("random_s", "1,000 random reads")):
                if peer.get(what) is None:
                    continue
                ratio = peer[what] / ours[what]
                mark = "met" if ratio >= 10 else "**not met**"
                lines.append(f"- {name} vs {peer['label']} ({peer['variant']}): ml_dash {_ms(ours[what])} ms "
                             f"vs {_ms(peer[what])} ms = {ratio:,.0f}x: {mark}")
    return "\n".join(lines)


def notes(results):
    lines = []
    for r in results:
        if r.get("note"):
            lines.append(f"- {r['label']}: {r['note']}.")
        if r.get("random_api") and r.get("random_s") is not None:
            lines.append(f"- {r['label']}: point reads use `{r['random_api']}`.")
        if r.get("reused"):
            lines.append(f"- {r['label']} ({r['variant']}): reused from the run of {r['measured_at']}.")
    return "\n".join(dict.fromkeys(lines))


def document(results, machine, command, plot_name=None):
    """The whole results page."""
    parts = [f"# ml_dash against its peers: {machine['date']} on {machine['name']}", "",
             f"Machine: {machine['description']}.", "", f"Command: `{command}`", "",
             f"Workload: N = {machine['steps']:,} steps (fewer where a row says so); each step logs "
             "`train` {loss, accuracy}, `eval` {loss, accuracy} and the root {epoch}. Commits: A = "
             "every step, B = every 100 steps, A/B = the system writes on its own schedule. Write "
             f"figures are medians of {machine['repeats']} runs, each in a fresh process; reads are "
             "in a new process after the writer closed; `read while written` polls a run from a "
             "second process while the first still writes.", "", table(results), ""]
    if plot_name:
        parts += [f"![write and read costs]({plot_name})", ""]
    parts += ["## Must reach", "", verdicts(results) or "- (no peers in this run)", "",
              "## Notes", "", notes(results) or "-", ""]
    return "\n".join(parts)
