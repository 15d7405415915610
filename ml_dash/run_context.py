"""Where a run comes from: the code's git state, the interpreter, the packages, the machine.

Recorded when a run starts, into its experiment record as ``context``
(``view.info["context"]``, printed by ``ml-dash show``), unless
``RUN.context`` or ``Experiment(context=False)`` turns it off::

    {"git": {"commit": "3f2a...", "branch": "main", "dirty": True},
     "command": ["train.py", "--lr", "0.1"], "cwd": "/src/proj",
     "python": "3.12.3", "executable": "/venv/bin/python", "platform": "Linux-6.1-x86_64",
     "ml_dash": "0.1.0", "packages": {"numpy": "2.1.0", "torch": "2.13.0"},
     "hostname": "node-7", "pid": 4242}

Why the record and not the params: the params are the user's (scripts
compare ``params.get()`` with what they set, and a sweep's table groups by
them); the record is where the launch history, the status and the error of a
failed launch already are, and what ``show`` prints.

The git state is read with one ``git status --porcelain=v2 --branch
--untracked-files=no`` run in the script's folder: the commit, the branch
(None when detached) and whether tracked files differ from that commit
(untracked files do not count: listing them is what makes ``git status``
slow in large trees, and most are outputs).  It runs with a timeout of
:data:`GIT_TIMEOUT` seconds, no terminal, and ``GIT_OPTIONAL_LOCKS=0`` (so
it never takes the index lock that a ``git commit`` running beside it
needs); outside a repository, without git, or on any failure the context
has no ``git``, and the run starts as usual.

It costs a process start of git (about 2 ms here, see
``bench/system_metrics.py``), so it is read once per folder and process
and kept: a harness that makes 10,000 runs pays it once.  (Rejected:
reading it at every start, which would also see the tree that files
written by the earlier runs made dirty; the code that runs is the code the
process loaded.)

Package versions are those of modules the process has already imported:
recording them must not import a framework (``import torch`` takes
seconds).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import threading

from .values import storable_text

GIT_TIMEOUT = 2.0  # seconds; a repository that takes longer to answer is recorded without git
PACKAGES = ("numpy", "torch", "lightning", "pytorch_lightning", "transformers", "accelerate",
            "keras", "tensorflow", "jax", "flax", "sklearn", "scipy", "pandas", "pyarrow", "datasets",
            "tokenizers", "timm", "torchvision", "deepspeed", "lmdb")
"""The packages whose versions are recorded, when imported."""
MAX_ARG = 1000  # characters of one command-line argument
MAX_COMMAND = 10_000
"""Characters of the command line kept in all: the arguments past it are counted, not kept.
A shell glob of a data set (``train.py data/*.png``) can pass megabytes, which the record
would carry at the start and the end of the run and every listing would read.  (Rejected:
keeping the first and last arguments: the options usually come first, the files after.)"""

_git_states: dict[str, dict | None] = {}  # folder -> its git state, read once per process
_git_lock = threading.Lock()


def collect_or_none(script: str | None) -> dict | None:
    """:func:`collect`, or None if anything in it fails: recording where a run comes
    from must never keep it from starting."""
    try:
        return collect(script)
    except Exception:  # noqa: BLE001 - an odd sys.argv, a platform call refused...
        return None


def collect(script: str | None) -> dict:
    """The context of a run whose code is ``script`` (a file or folder; None: the
    ``__main__`` script, else the current directory)."""
    if not script:
        script = getattr(sys.modules.get("__main__"), "__file__", None)
    folder = os.path.abspath(script) if script else _cwd()
    if not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    context: dict = {}
    git = git_state(folder)
    if git is not None:
        context["git"] = git
    context.update(
        command=_command(getattr(sys, "argv", None) or ()),
        cwd=storable_text(_cwd()),
        python=platform.python_version(),
        executable=storable_text(sys.executable or ""),
        platform=platform.platform(),
        ml_dash=_version(sys.modules.get("ml_dash")),
        packages=imported_versions(),
        hostname=socket.gethostname(),
        pid=os.getpid(),
    )
    return context


def _command(argv):
    """``argv`` as stored: each argument cut at :data:`MAX_ARG` characters, and those past
    :data:`MAX_COMMAND` in all replaced by one ``"... (N more arguments)"``."""
    command: list[str] = []
    size = 0
    for index, arg in enumerate(argv):
        text = storable_text(str(arg)[:MAX_ARG])
        size += len(text)
        if size > MAX_COMMAND:
            command.append(f"... ({len(argv) - index} more arguments)")
            break
        command.append(text)
    return command


def imported_versions() -> dict:
    """``{name: version}`` of the :data:`PACKAGES` this process has imported."""
    out = {}
    for name in PACKAGES:
        version = _version(sys.modules.get(name))
        if version is not None:
            out[name] = version
    return out


def git_state(folder: str) -> dict | None:
    """``{"commit", "branch", "dirty"}`` of the repository holding ``folder``, or None.

    Read once per folder in a process (see the module's docstring).
    """
    with _git_lock:  # two runs started at once in two threads run git once
        if folder not in _git_states:
            _git_states[folder] = _read_git(folder)
        state = _git_states[folder]
    return None if state is None else dict(state)


def _read_git(folder):
    environment = dict(os.environ, GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    command = ["git", "-C", folder, "status", "--porcelain=v2", "--branch", "--untracked-files=no",
               "--no-renames"]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=GIT_TIMEOUT, env=environment, check=False)
    except (OSError, subprocess.SubprocessError, ValueError):  # no git, a timeout, a folder git cannot take
        return None
    if done.returncode != 0:  # not a repository, or one git refuses (its owner is another user)
        return None
    commit = branch = None
    dirty = False
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("# branch.oid "):
            oid = line[len("# branch.oid "):].strip()
            commit = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line[len("# branch.head "):].strip()
            branch = None if head == "(detached)" else head
        elif line and not line.startswith("#"):
            dirty = True
    return {"commit": commit, "branch": branch, "dirty": dirty}


def short(context: dict | None) -> str | None:
    """The commit as a launch shows it, ``3f2a9c1d07be`` or ``3f2a9c1d07be+dirty``, or None."""
    git = (context or {}).get("git") or {}
    commit = git.get("commit")
    if not commit:
        return None
    return commit[:12] + ("+dirty" if git.get("dirty") else "")


def _version(module):
    version = getattr(module, "__version__", None)
    return version if isinstance(version, str) else None if version is None else str(version)


def _cwd():
    try:
        return os.getcwd()
    except OSError:  # the folder was removed under the process
        return ""
