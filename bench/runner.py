"""Runs one configuration: writes in fresh child processes, then reads back
in new ones, then a live read beside a writer; collects the children's JSON.

Each child runs under the system's own interpreter (its peer venv, or this
interpreter for ml_dash and the floors), so one system's imports, caches
and memory never leak into another's figures.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import envs

CHILD = Path(__file__).resolve().parent / "child.py"
MARKER = "BENCH-RESULT "
QUIET = {
    "ML_DASH_NO_VERSION_CHECK": "1",    # the reference package checks for updates over HTTP
    "MLFLOW_ALLOW_FILE_STORE": "true",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "WANDB_DISABLE_CODE": "true",
    "AIM_UI_TELEMETRY_ENABLED": "0",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "DISABLE_MLFLOW_INTEGRATION": "TRUE",
}


def interpreter(config):
    return str(envs.python_of(config.venv)) if config.venv else sys.executable


def child_env(config, home):
    env = dict(os.environ, **QUIET, **config.env)
    env["HOME"] = home                   # peers keep caches and settings under ~; keep them here
    env["TRACKIO_DIR"] = os.path.join(home, "trackio")
    if config.venv:
        # A peer's venv must not see this checkout's packages; ml_dash and the
        # floors run under this interpreter and import what the parent does.
        env.pop("PYTHONPATH", None)
    return env


def spawn(config, mode, args, home):
    return subprocess.Popen([interpreter(config), str(CHILD), config.module, mode, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(config, home), cwd=home)


def collect(process, timeout):
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return {"error": f"timed out after {timeout} s"}
    for line in out.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    tail = (err.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {process.returncode}: {tail[:300]}"}


def run_child(config, mode, args, home, timeout):
    return collect(spawn(config, mode, args, home), timeout)


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return str(path)


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def measure(config, steps, repeats, read_repeats, work, timeout=1800, settings=None):
    """All figures of one configuration as a JSON-able dict."""
    steps = min(steps, config.steps) if config.steps else steps
    result = {"key": config.key, "label": config.label, "variant": config.variant, "kind": config.kind,
              "steps": steps, "capped": bool(config.steps and steps == config.steps),
              "note": config.note, "errors": []}
    if config.venv:
        state = envs.status(config.venv)
        if state != "ready":
            result["errors"].append(f"not installed: {state}")
            return result
    home = fresh(Path(work) / config.key / "home")
    args = {"steps": steps, "commit_every": config.commit_every, "option": config.option, **(settings or {})}
    writes = []
    for _ in range(repeats):
        directory = fresh(Path(work) / config.key / "data")
        written = run_child(config, "write", dict(args, directory=directory), home, timeout)
        if "error" in written:
            result["errors"].append("write: " + written["error"])
            return result
        writes.append(written)
    result["version"] = writes[-1]["version"]
    result["write_us"] = spread([w["us_per_step"] for w in writes])
    for name in ("setup_s", "rss_mib", "helper_rss_mib"):
        result[name] = statistics.median(w[name] for w in writes)
    result["disk_bytes_per_step"] = writes[-1]["disk_bytes"] / steps
    if config.reads:
        reads = []
        for _ in range(read_repeats):
            read = run_child(config, "read", dict(args, directory=directory), home, timeout)
            if "error" in read:
                result["errors"].append("read: " + read["error"])
                break
            reads.append(read)
        if reads:
            result.update(summarize_reads(reads, steps))
            result["errors"] += check(reads[-1], steps)
    if config.live:
        result["live"] = live(config, args, work, home, timeout)
    return result


def summarize_reads(reads, steps):
    out = {name: statistics.median(r[name] for r in reads) for name in ("open_s", "full_s")}
    last = reads[-1]
    out["random_api"] = last.get("random_api", "")
    if last.get("random_s") is not None:
        out["random_s"] = statistics.median(r["random_s"] for r in reads)
        out["random_extrapolated_from"] = last["random_done"] if last["random_done"] < 1000 else None
    out["counts"] = last["counts"]
    return out


def check(read, steps):
    """Points read back must equal points written, with the values written."""
    problems = []
    if any(count != steps for count in read["counts"].values()):
        problems.append(f"read back {read['counts']} points, wrote {steps} per stream")
    if read["full_len"] != steps or read["full_wrong"]:
        problems.append(f"full read: {read['full_len']} values, {read['full_wrong']} of 3 checked wrong")
    if read.get("random_wrong"):
        problems.append(f"{read['random_wrong']} random point reads returned the wrong value")
    return problems


def live(config, args, work, home, timeout):
    """A writer child and a reader child at once; the reader polls and checks consistency."""
    directory = fresh(Path(work) / config.key / "live")
    signals = fresh(Path(work) / config.key / "signals")
    live_args = dict(args, directory=directory, signals=signals,
                     steps=1_000_000)  # the writer runs until the reader is done
    writer = spawn(config, "live-write", live_args, home)
    reader = run_child(config, "live-read", live_args, home, timeout)
    open(os.path.join(signals, "stop"), "w").close()
    written = collect(writer, timeout)
    if "error" in written:
        reader.setdefault("errors", []).append("writer: " + written["error"])
    return reader


def cached(path, steps):
    """A previous result for the same N, or None."""
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    wanted = result.get("requested_steps")
    return result if wanted == steps and not result.get("errors") else None


def measure_or_reuse(config, steps, repeats, read_repeats, work, cache_dir, reuse, settings=None):
    path = Path(cache_dir) / f"{config.key}.json"
    if reuse and config.kind == "peer":
        previous = cached(path, steps)
        if previous:
            previous["reused"] = True
            return previous
    started = time.time()
    result = measure(config, steps, repeats, read_repeats, work, settings=settings)
    result["requested_steps"] = steps
    result["wall_s"] = round(time.time() - started, 1)
    result["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    os.makedirs(cache_dir, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result
