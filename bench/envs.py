"""One virtual environment per peer under the git-ignored ``bench/.venvs/<peer>``.

Peers bring heavy and conflicting dependencies (the reference ``ml-dash``
even shares our import name), so each is installed in isolation and never
touches the project's own environment. An install that fails is recorded
in ``bench/.venvs/<peer>/install.log`` and reported in the table, so a
peer is never silently dropped.

    python bench/envs.py            # create or complete every peer venv
    python bench/envs.py aim wandb  # only these
"""

import subprocess
import sys
import venv
from pathlib import Path

VENVS = Path(__file__).resolve().parent / ".venvs"

# Pinned to the versions measured in the project's peer notes; numpy is
# needed by the adapters to hand back a column as an array.
REQUIREMENTS = {
    "ref_ml_dash": ["ml-dash==0.11.0", "numpy"],
    "mlflow": ["mlflow==3.17.2", "numpy"],
    "tensorboard": ["tensorboardX==2.6.5", "tensorboard", "numpy", "setuptools<81"],
    "aim": ["aim==3.29.1", "numpy"],
    "trackio": ["trackio==0.43.0", "numpy"],
    "wandb": ["wandb==0.31.0", "numpy"],
}


def python_of(peer):
    """Path of the peer venv's interpreter."""
    return VENVS / peer / "bin" / "python"


def status(peer):
    """``"ready"``, ``"missing"`` or ``"failed: <last log line>"`` for one peer."""
    root = VENVS / peer
    if (root / "ready").exists():
        return "ready"
    log = root / "install.log"
    if log.exists() and (root / "failed").exists():
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        return "failed: " + (lines[-1][:160] if lines else "no output")
    return "missing"


def install(peer):
    """Create the venv and install the peer's pinned requirements; return its status."""
    root = VENVS / peer
    if (root / "ready").exists():
        return "ready"
    root.mkdir(parents=True, exist_ok=True)
    (root / "failed").unlink(missing_ok=True)
    if not python_of(peer).exists():
        venv.EnvBuilder(with_pip=True).create(root)
    command = [str(python_of(peer)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
               *REQUIREMENTS[peer]]
    with open(root / "install.log", "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    (root / ("ready" if result.returncode == 0 else "failed")).write_text(" ".join(command))
    return status(peer)


def main(argv=None):
    peers = (argv if argv is not None else sys.argv[1:]) or list(REQUIREMENTS)
    for peer in peers:
        print(f"{peer}: {install(peer)}", flush=True)


if __name__ == "__main__":
    main()
