"""A run folder holds one run, and nothing in it leads ml_dash outside it.

Runs here are made with the public API and then altered on disk (or, for
crafted file records, through the storage layer), as a run received from
someone else may be: nested runs, symbolic links, names with ``..`` or an
absolute path, prefixes that are not text, paths that are files.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

import ml_dash
from ml_dash import ConfigurationError, Experiment, StorageError, load
from ml_dash.storage.codec import encode_value
from ml_dash.storage.keys import FILES_DB


def make_run(dash_root, prefix="team/proj"):
    with Experiment(prefix=prefix, dash_root=dash_root).run as exp:
        for step in range(5):
            exp.metrics("train").log(step=step, loss=1 / (step + 1)).flush()
        exp.files("cfg").save_text("lr=0.1", to="train.txt")
    return exp.path


def snapshot(folder):
    """``{relative path: bytes}`` of every file under ``folder``."""
    out = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, folder)] = handle.read()
    return out


# -- 6. one run per folder ---------------------------------------------------------------

@pytest.mark.parametrize("inner", ["team/proj/files", "team/proj/columns/0", "team/proj/a/b"])
def test_a_prefix_inside_another_run_is_refused_and_makes_no_folder(dash_root, inner):
    outer = make_run(dash_root)
    before = sorted(os.listdir(outer))
    with pytest.raises(ConfigurationError, match="inside the run 'team/proj'") as caught:
        Experiment(prefix=inner, dash_root=dash_root)
    assert inner in str(caught.value)
    assert sorted(os.listdir(outer)) == before
    assert ml_dash.check("team/proj", dash_root=dash_root).ok


def test_a_prefix_around_another_run_is_refused(dash_root):
    make_run(dash_root, "team/proj/a/run")
    for outer in ("team/proj", "team/proj/a"):
        with pytest.raises(ConfigurationError, match="already holds the run 'team/proj/a/run'"):
            Experiment(prefix=outer, dash_root=dash_root)
    assert not os.path.exists(os.path.join(dash_root, "team", "proj", "data.mdb"))
    make_run(dash_root, "team/proj/b")  # beside it is fine
    assert [r["prefix"] for r in ml_dash.list_experiments(dash_root)] == [
        "team/proj/a/run", "team/proj/b"]


def test_a_folder_named_like_a_store_file_is_not_taken_for_a_run(dash_root):
    make_run(dash_root, "team/data.mdb/run")
    make_run(dash_root, "team/data.mdb/run")  # reopened: the folder data.mdb is no store
    with load("team/data.mdb/run", dash_root=dash_root) as view:
        assert len(view.metrics("train")) == 10


def test_start_refuses_a_prefix_that_a_new_run_now_contains(dash_root):
    inner = Experiment(prefix="team/proj/later", dash_root=dash_root)
    make_run(dash_root)  # made after inner was created, before it starts
    with pytest.raises(ConfigurationError, match="inside the run 'team/proj'"):
        inner.run.start()
    assert not os.path.exists(os.path.join(dash_root, "team", "proj", "later"))


def test_repair_deletes_only_leftovers_ml_dash_wrote(dash_root):
    """A run nested in another's files/ (as older versions let one make) survives its repair."""
    outer = make_run(dash_root)
    inner = make_run(dash_root, "team/other")
    shutil.copytree(inner, os.path.join(outer, "files"), dirs_exist_ok=True)
    leftover = os.path.join(outer, "files", "ab" * 16)  # as a killed save leaves one
    temporary = os.path.join(outer, "files", ".tmp-" + "cd" * 16)
    for path in (leftover, temporary):
        with open(path, "wb") as handle:
            handle.write(b"orphan")
    inner_files = snapshot(inner)
    report = ml_dash.check("team/proj", dash_root=dash_root, repair=True)
    assert report.ok, report.problems
    assert sorted(report.repaired) == sorted(
        f"removed {path} belongs to no file record (left by a killed save)"
        for path in (leftover, temporary))
    nested = snapshot(os.path.join(outer, "files"))
    assert set(inner_files) <= set(nested)
    for name, data in inner_files.items():
        if name not in ("lock.mdb", "writer.lock"):  # these two are rewritten by every open
            assert nested[name] == data, name
    with load("team/proj", dash_root=dash_root) as view:
        assert view.files("cfg/train.txt").read_text() == "lr=0.1"


# -- 7. symbolic links inside a run folder --------------------------------------------------

def read_column(dash_root, stream, key):
    with load("team/proj", dash_root=dash_root) as view:
        return list(view.metrics(stream).column(key))


LINKED = ["writer.lock", "lock.mdb", "data.mdb", "files", "columns", "columns/1",
          "columns/1/1.f64"]  # stream 1 is "train"


@pytest.mark.parametrize("entry", LINKED)
def test_a_symbolic_link_in_a_run_folder_is_refused_and_never_followed(dash_root, tmp_path, entry):
    run = make_run(dash_root)
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / os.path.basename(entry)
    os.replace(os.path.join(run, entry), target)
    os.symlink(target, os.path.join(run, entry))
    if entry == "files":  # what a repair through the link would take for a leftover
        (target / ("ef" * 16)).write_bytes(b"not a leftover of this run")
    before = snapshot(outside)
    attempts = {
        "writer": lambda: Experiment(prefix="team/proj", dash_root=dash_root).run.start(),
        "reader": lambda: read_column(dash_root, "train", "step"),
        "repair": lambda: ml_dash.check("team/proj", dash_root=dash_root, repair=True),
        "compact": lambda: ml_dash.compact("team/proj", dash_root=dash_root),
    }
    if entry.startswith("columns/"):
        del attempts["compact"]  # it rewrites data.mdb alone and never opens a column
    for name, attempt in attempts.items():
        with pytest.raises(StorageError, match="symbolic link") as caught:
            attempt()
        assert os.path.join(run, entry) in str(caught.value), name
        assert snapshot(outside) == before, name
    os.unlink(os.path.join(run, entry))
    os.replace(target, os.path.join(run, entry))  # put back: the run opens again, whole
    assert read_column(dash_root, "train", "step") == [0, 1, 2, 3, 4]


def test_a_content_file_link_is_never_read(dash_root, tmp_path):
    run = make_run(dash_root)
    with load("team/proj", dash_root=dash_root) as view:
        content = os.path.join(run, "files", view.files("cfg/train.txt").list()[0]["id"])
    secret = tmp_path / "secret.txt"
    os.replace(content, secret)  # the record's checksum matches what the link leads to
    os.symlink(secret, content)
    with load("team/proj", dash_root=dash_root) as view:
        for attempt in (view.files("cfg/train.txt").read_bytes,
                        lambda: view.files("cfg").download(to=str(tmp_path / "out"))):
            with pytest.raises(StorageError, match="symbolic link"):
                attempt()
    assert not (tmp_path / "out" / "train.txt").exists()
    report = ml_dash.check("team/proj", dash_root=dash_root)
    assert any("symbolic link" in problem for problem in report.problems)


def test_a_content_file_that_is_a_folder_is_a_storage_error(dash_root):
    run = make_run(dash_root)
    with load("team/proj", dash_root=dash_root) as view:
        content = os.path.join(run, "files", view.files("cfg/train.txt").list()[0]["id"])
    os.unlink(content)
    os.mkdir(content)
    with load("team/proj", dash_root=dash_root) as view, \
            pytest.raises(StorageError, match="'cfg/train.txt'.*not a regular file"):
        view.files("cfg/train.txt").read_bytes()
    assert not ml_dash.check("team/proj", dash_root=dash_root).ok


# -- 8. names read from a store are untrusted -----------------------------------------------

def craft(dash_root, key, **fields):
    """Store a file record under ``key`` with ``fields`` changed, as a crafted run would."""
    with Experiment(prefix="team/proj", dash_root=dash_root).run as exp:
        record = dict(exp.files("cfg/train.txt").list()[0], **fields)
        session = exp._open_session()
        session.stage_record((FILES_DB, key.encode("utf-8"), encode_value(record)))
        session.flush()


def files_outside(folder, dash_root):
    """Every file under ``folder`` but not under ``dash_root``."""
    return sorted(path for path in folder.rglob("*") if path.is_file()
                  and not str(path).startswith(dash_root + os.sep))


@pytest.mark.parametrize("filename", ["../../escaped.txt", "/ABSOLUTE"])
def test_a_crafted_filename_cannot_make_a_download_escape(dash_root, tmp_path, filename):
    make_run(dash_root)
    filename = filename.replace("/ABSOLUTE", str(tmp_path / "absolute.txt"))
    craft(dash_root, "cfg/evil.txt", filename=filename)
    target = tmp_path / "out" / "a" / "b"
    target.mkdir(parents=True)
    with load("team/proj", dash_root=dash_root) as view:
        with pytest.raises(StorageError, match="'cfg/evil.txt'.*filename"):
            view.files("cfg/evil.txt").download(to=str(target))
        assert view.files("cfg/train.txt").download(to=str(target)) == str(target / "train.txt")
    assert files_outside(tmp_path, dash_root) == [target / "train.txt"]


@pytest.mark.parametrize("key", ["../../escaped.txt", "/cfg//x.txt"])
def test_a_crafted_stored_path_cannot_make_a_download_escape(dash_root, tmp_path, key):
    make_run(dash_root)
    craft(dash_root, key)
    target = tmp_path / "out" / "a" / "b"
    target.mkdir(parents=True)
    with load("team/proj", dash_root=dash_root) as view, \
            pytest.raises(StorageError, match="stored path"):
        view.files.download(to=str(target))
    assert files_outside(tmp_path, dash_root) == []  # nothing copied at all


def test_a_crafted_content_id_never_names_a_file_outside(dash_root, tmp_path):
    make_run(dash_root)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    checksum = hashlib.sha256(b"precious").hexdigest()
    craft(dash_root, "cfg/x.txt", id=str(victim), checksum=checksum, sizeBytes=8)
    with load("team/proj", dash_root=dash_root) as view, \
            pytest.raises(StorageError, match="'cfg/x.txt'.*content id"):
        view.files("cfg/x.txt").read_bytes()
    report = ml_dash.check("team/proj", dash_root=dash_root)
    assert any("'cfg/x.txt'" in p and "content id" in p for p in report.problems)
    with Experiment(prefix="team/proj", dash_root=dash_root).run as exp:
        exp.files("cfg").save_text("replaced", to="x.txt")  # replaces the crafted record
        assert exp.files("cfg/x.txt").read_text() == "replaced"
    craft(dash_root, "cfg/y.txt", id=str(victim))
    with Experiment(prefix="team/proj", dash_root=dash_root).run as exp:
        assert exp.files("cfg/y.txt").delete()["filename"] == "train.txt"
        assert not exp.files("cfg/y.txt").exists()
    assert victim.read_bytes() == b"precious"
    assert ml_dash.check("team/proj", dash_root=dash_root).ok


# -- 21. prefixes that are not text, paths that are files -------------------------------------

def test_a_prefix_with_a_lone_surrogate_is_refused_and_makes_no_folder(dash_root):
    prefix = os.fsdecode(b"team/proj-\xff")  # as sys.argv gives bytes that are not UTF-8
    for attempt in (lambda: Experiment(prefix=prefix, dash_root=dash_root),
                    lambda: load(prefix, dash_root=dash_root),
                    lambda: ml_dash.check(prefix, dash_root=dash_root)):
        with pytest.raises(ConfigurationError, match="lone surrogate"):
            attempt()
    assert not os.path.exists(dash_root)
    result = subprocess.run([sys.executable, "-m", "ml_dash", "show", b"team/proj-\xff",
                             "--dash-root", dash_root], capture_output=True, timeout=60, check=False)
    assert result.returncode != 0 and b"lone surrogate" in result.stderr
    assert b"Traceback" not in result.stderr


def test_a_run_folder_renamed_to_bytes_that_are_not_utf8_is_listed_as_unreadable(dash_root):
    make_run(dash_root)
    make_run(dash_root, "team/other")
    os.rename(os.path.join(dash_root, "team", "proj"), os.fsencode(dash_root) + b"/team/proj-\xff")
    runs = {run["prefix"]: run for run in ml_dash.list_experiments(dash_root)}
    assert runs["team/other"]["status"] == "COMPLETED"
    unreadable = runs[os.fsdecode(b"team/proj-\xff")]
    assert unreadable["status"] == "UNREADABLE" and "not valid UTF-8" in unreadable["error"]


def test_paths_that_are_files_are_named_in_a_storage_error(tmp_path):
    (tmp_path / "root-file").write_text("")
    (tmp_path / "root" / "team").mkdir(parents=True)
    (tmp_path / "root" / "team" / "proj").write_text("")
    cases = [(str(tmp_path / "root-file"), "team/proj", tmp_path / "root-file"),
             (str(tmp_path / "root"), "team/proj/run", tmp_path / "root" / "team" / "proj"),
             (str(tmp_path / "root"), "team/proj", tmp_path / "root" / "team" / "proj")]
    for dash_root, prefix, culprit in cases:
        exp = Experiment(prefix=prefix, dash_root=dash_root)
        with pytest.raises(StorageError, match="is a file") as caught:
            exp.run.start()
        assert f"{culprit} is a file" in str(caught.value)
    assert sorted(os.listdir(tmp_path / "root" / "team")) == ["proj"]


UNWRITABLE = """
import os, sys
import ml_dash
if os.geteuid() == 0:
    os.setuid(65534)  # root may write anywhere: become nobody, everything is imported
try:
    ml_dash.Experiment(prefix="team/proj", dash_root=sys.argv[1]).run.start()
except ml_dash.MLDashError as exc:
    print(type(exc).__name__, exc)
"""


def test_an_unwritable_dash_root_is_named_in_a_storage_error():
    parent = tempfile.mkdtemp(prefix="ml_dash_unwritable_")  # in /tmp: nobody may look in
    root = os.path.join(parent, "read-only")
    try:
        os.mkdir(root, 0o555)
        os.chmod(root, 0o555)
        os.chmod(parent, 0o755)
        result = subprocess.run([sys.executable, "-c", UNWRITABLE, root],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.stdout.startswith("StorageError"), result.stdout + result.stderr
        assert f"{root} cannot be written" in result.stdout
        assert os.listdir(root) == []
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_compaction_removes_only_its_own_copy(dash_root):
    outer = make_run(dash_root)
    inner = make_run(dash_root, "team/other")
    shutil.copytree(inner, os.path.join(outer, ".compacting"))  # as older versions let one nest
    kept = snapshot(os.path.join(outer, ".compacting"))
    with pytest.raises(StorageError, match="holds files compaction does not write"):
        ml_dash.compact("team/proj", dash_root=dash_root)
    assert snapshot(os.path.join(outer, ".compacting")) == kept
    shutil.rmtree(os.path.join(outer, ".compacting"))
    os.mkdir(os.path.join(outer, ".compacting"))  # as a killed compaction leaves it
    with open(os.path.join(outer, ".compacting", "data.mdb"), "wb") as handle:
        handle.write(b"half a copy")
    before, after = ml_dash.compact("team/proj", dash_root=dash_root)
    assert after <= before and not os.path.exists(os.path.join(outer, ".compacting"))
    assert read_column(dash_root, "train", "step") == [0, 1, 2, 3, 4]
