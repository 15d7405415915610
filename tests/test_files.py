"""exp.files: saving, listing, downloading, deleting, duplicating; views; extras."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

import ml_dash
from ml_dash import Experiment, StorageError, load
from ml_dash.extras import install_hint


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(os.urandom(10_000))
    return path


def sha(data):
    return hashlib.sha256(data).hexdigest()


def content_files(exp):
    folder = os.path.join(exp.path, "files")
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def test_upload_record_and_source_left_alone(exp, source):
    before = source.read_bytes()
    record = exp.files("models").upload(str(source), description="best", tags=["a"],
                                        metadata={"epoch": 3})
    assert record["path"] == "/models" and record["filename"] == "model.pt"
    assert record["sizeBytes"] == 10_000 and record["checksum"] == sha(before)
    assert record["description"] == "best" and record["tags"] == ["a"]
    assert record["metadata"] == {"epoch": 3} and record["uploadedAt"].endswith("Z")
    assert {"id", "contentType"} <= set(record)
    assert source.read_bytes() == before  # never moved, deleted or changed
    assert exp.files("models/model.pt").read_bytes() == before


def test_upload_to_renames_and_same_name_replaces(exp, source, tmp_path):
    exp.files("models").upload(source, to="latest.pt")
    other = tmp_path / "other.bin"
    other.write_bytes(b"second")
    record = exp.files("models").upload(other, to="latest.pt")
    assert [r["filename"] for r in exp.files("models").list()] == ["latest.pt"]
    assert exp.files("models/latest.pt").read_bytes() == b"second"
    assert content_files(exp) == [record["id"]]  # the replaced contents are gone
    # The handle of a stored file is no folder to upload into: the error says how to replace it.
    with pytest.raises(ValueError, match="'models/latest.pt' is a stored file.*to='latest.pt'"):
        exp.files("models/latest.pt").upload(source)
    assert exp.files("models/latest.pt").read_bytes() == b"second"


def test_save_dispatches_on_content(exp, source):
    assert exp.files.save(str(source))["filename"] == "model.pt"
    assert exp.files.save(b"\x00\x01", to="raw.bin")["sizeBytes"] == 2
    assert exp.files("cfg").save({"lr": 0.1}, to="config.json")["contentType"] == "application/json"
    exp.files.save([1, 2], to="list.json")
    assert json.loads(exp.files("cfg/config.json").read_text()) == {"lr": 0.1}
    assert json.loads(exp.files("list.json").read_text()) == [1, 2]
    with pytest.raises(FileNotFoundError, match="save_text"):
        exp.files.save("not a file on disk", to="x.txt")
    with pytest.raises(TypeError, match="set"):
        exp.files.save({1, 2}, to="x.bin")


def test_save_text_json_blob_and_reading(exp):
    exp.files("notes").save_text("héllo", to="a.txt")
    exp.files("notes/b.json").save_json({"k": [1, 2]})
    exp.files.save_blob(bytearray(b"xyz"), to="deep/er/c.bin")
    assert exp.files("notes/a.txt").read_text() == "héllo"
    assert json.loads(exp.files("notes/b.json").read_bytes()) == {"k": [1, 2]}
    assert exp.files("deep/er/c.bin").read_bytes() == b"xyz"
    assert exp.files("notes/a.txt").exists() and exp.files("notes").exists()
    assert not exp.files("notes/zzz.txt").exists() and not exp.files("empty").exists()
    with pytest.raises(FileNotFoundError, match="notes/zzz.txt"):
        exp.files("notes/zzz.txt").read_text()
    with pytest.raises(TypeError):
        exp.files.save_text(b"bytes", to="a.txt")
    with pytest.raises(TypeError):
        exp.files.save_blob("text", to="a.bin")
    with pytest.raises(TypeError, match="JSON"):
        exp.files.save_json({"a": object()}, to="a.json")
    with pytest.raises(ValueError, match="to="):
        exp.files("notes").save_text("no name")


def test_list_scopes_and_patterns(exp):
    for name in ("models/a.pt", "models/b.pt", "models/old/c.pt", "logs/x.txt", "top.txt"):
        folder, _, filename = name.rpartition("/")
        exp.files(folder).save_text(name, to=filename)
    assert len(exp.files.list()) == 5
    assert sorted(r["filename"] for r in exp.files("models").list()) == ["a.pt", "b.pt", "c.pt"]
    assert [r["filename"] for r in exp.files("models").list("a*")] == ["a.pt"]
    assert [r["filename"] for r in exp.files.list("*.txt")] == ["x.txt", "top.txt"]
    assert [r["filename"] for r in exp.files("models/a.pt").list()] == ["a.pt"]
    assert exp.files("model").list() == []  # a name prefix is not a folder


def test_download_verifies_and_places_files(exp, source, tmp_path, monkeypatch):
    exp.files("models").upload(source)
    exp.files("models").save_text("t", to="sub/notes.txt")
    out = tmp_path / "out"
    out.mkdir()
    assert exp.files("models/model.pt").download(to=str(out)) == str(out / "model.pt")
    assert (out / "model.pt").read_bytes() == source.read_bytes()
    renamed = exp.files("models/model.pt").download(to=str(tmp_path / "new" / "copy.pt"))
    assert open(renamed, "rb").read() == source.read_bytes()
    monkeypatch.chdir(tmp_path)
    assert exp.files("models/model.pt").download() == str(tmp_path / "model.pt")
    paths = exp.files("models").download("*.txt", to=str(tmp_path / "many"))
    assert paths == [str(tmp_path / "many" / "sub" / "notes.txt")]
    everything = exp.files.download(to=str(tmp_path / "all"))
    assert sorted(os.path.relpath(p, tmp_path / "all") for p in everything) == [
        os.path.join("models", "model.pt"), os.path.join("models", "sub", "notes.txt")]
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        exp.files("models/nothing.pt").download(to=str(out))
    with pytest.raises(FileNotFoundError):
        exp.files("models").download("*.zip", to=str(out))


def test_damaged_contents_are_refused(exp, tmp_path):
    record = exp.files.save_blob(b"original", to="a.bin")
    with open(os.path.join(exp.path, "files", record["id"]), "r+b") as handle:
        handle.write(b"X")
    with pytest.raises(StorageError, match="damaged"):
        exp.files("a.bin").download(to=str(tmp_path / "a.bin"))
    assert not (tmp_path / "a.bin").exists()
    assert os.listdir(tmp_path) == ["dash"]  # no temporary file left behind
    with pytest.raises(StorageError, match="damaged"):
        exp.files("a.bin").read_bytes()


def test_delete_file_and_pattern(exp):
    for name in ("a.txt", "b.txt", "c.bin"):
        exp.files("d").save_text(name, to=name)
    removed = exp.files("d/a.txt").delete()  # one file: its record
    assert removed["filename"] == "a.txt" and removed["deletedAt"].endswith("Z")
    assert [r["filename"] for r in exp.files("d").delete("*.txt")] == ["b.txt"]
    assert [r["filename"] for r in exp.files.list()] == ["c.bin"]
    assert len(content_files(exp)) == 1
    with pytest.raises(FileNotFoundError, match="d/a.txt"):
        exp.files("d/a.txt").delete()
    with pytest.raises(FileNotFoundError):
        exp.files("d").delete("*.zip")


def test_duplicate_by_record_and_by_id(exp):
    record = exp.files("ckpt").save_blob(b"weights", to="epoch3.pt")
    copy = exp.files().duplicate(record, to="ckpt/latest.pt")
    assert copy["checksum"] == record["checksum"] and copy["id"] != record["id"]
    exp.files("ckpt").save_blob(b"newer", to="epoch4.pt")
    newer = exp.files("ckpt/epoch4.pt").list()[0]
    exp.files().duplicate(newer["id"], to="ckpt/latest.pt")  # replaces the alias
    assert exp.files("ckpt/latest.pt").read_bytes() == b"newer"
    assert exp.files("ckpt/epoch3.pt").read_bytes() == b"weights"
    with pytest.raises(FileNotFoundError, match="nope"):
        exp.files().duplicate("nope", to="x.pt")


def test_bad_paths_are_rejected(exp):
    for bad in ("../escape.txt", "a/./b.txt", "a\\b.txt", "a\0b"):
        with pytest.raises(ValueError):
            exp.files.save_text("x", to=bad)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        exp.files.upload("missing.pt")
    assert exp.files.list() == []


def test_any_name_is_safe_on_disk(exp):
    exp.files("ünï cödé/sp ace").save_text("x", to="na:me*?.txt")
    assert exp.files("ünï cödé/sp ace/na:me*?.txt").read_text() == "x"
    assert os.listdir(exp.path + "/files")[0].isalnum()


def test_files_before_start_raise(dash_root):
    exp = Experiment(prefix="alice/proj/never", dash_root=dash_root)
    with pytest.raises(RuntimeError, match="not started"):
        exp.files.save_text("x", to="a.txt")
    exp.run.start()
    files = exp.files
    exp.run.complete()
    with pytest.raises(RuntimeError, match="closed"):
        files.save_text("x", to="a.txt")
    assert exp.files.list() == []  # reading still works after close


def test_another_process_reads_the_file_byte_for_byte(dash_root, tmp_path):
    data = os.urandom(3 << 20)
    with Experiment(prefix="alice/proj/f", dash_root=dash_root).run as exp:
        exp.files("models").save_blob(data, to="w.bin")
        script = (
            "import sys; from ml_dash import load\n"
            "view = load('alice/proj/f', dash_root=sys.argv[1])\n"
            "print([r['filename'] for r in view.files.list()])\n"
            "sys.stdout.flush()\n"
            "view.files('models/w.bin').download(to=sys.argv[2])\n")
        out = subprocess.run([sys.executable, "-c", script, dash_root, str(tmp_path / "copy.bin")],
                             capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['w.bin']"
    assert (tmp_path / "copy.bin").read_bytes() == data


def test_view_lists_downloads_and_reads(dash_root, tmp_path):
    with Experiment(prefix="alice/proj/v", dash_root=dash_root).run as exp:
        exp.files("a").save_text("one", to="1.txt")
        exp.files("a").save_text("two", to="2.txt")
    with load("alice/proj/v", dash_root=dash_root) as view:
        assert [r["filename"] for r in view.files.list()] == ["1.txt", "2.txt"]
        assert view.files("a/2.txt").read_text() == "two"
        assert view.files("a").download("1*", to=str(tmp_path)) == [str(tmp_path / "1.txt")]
        # The same Files class as a live run's, without a writer: writing says why not.
        with pytest.raises(ml_dash.ExperimentError, match="opened read-only"):
            view.files.save_text("three", to="3.txt")
        assert [r["filename"] for r in view.files.list()] == ["1.txt", "2.txt"]


def test_save_torch_without_torch_names_the_extra(exp):
    try:
        import torch  # noqa: F401
        pytest.skip("torch is installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match=r"save_torch\(\) this needs torch, from the 'torch' extra: .*pip install"):
        exp.files.save_torch({"w": 1}, to="m.pt")
    assert exp.files.list() == []


def test_save_image_round_trips_with_pillow(exp):
    image = pytest.importorskip("PIL.Image")
    import io

    import numpy as np
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    record = exp.files("img").save_image(pixels, to="a.png")
    assert record["contentType"] == "image/png"
    back = np.asarray(image.open(io.BytesIO(exp.files("img/a.png").read_bytes())))
    assert (back == pixels).all()
    gray = exp.files("img").save_image(np.full((2, 3), 0.5), to="g.jpg")
    assert image.open(io.BytesIO(exp.files("img/g.jpg").read_bytes())).format == "JPEG"
    assert gray["contentType"] == "image/jpeg"


def test_save_fig_with_matplotlib_or_a_clear_error(exp):
    try:
        import matplotlib
    except ImportError:
        with pytest.raises(ImportError, match=r"ml-dash\[plot\]"):
            exp.files("plots").save_fig(None, to="loss.png")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    exp.files("plots").save_fig(fig, to="loss.png")
    plt.close(fig)
    assert exp.files("plots/loss.png").read_bytes().startswith(b"\x89PNG")


WRITER = """
import hashlib, sys
from ml_dash import Experiment
exp = Experiment(prefix="alice/proj/kill", dash_root=sys.argv[1]).run.start()
for i in range(10_000):
    data = hashlib.sha256(str(i).encode()).digest() * (8192 * (1 + i % 4))
    exp.files("ckpt").save_blob(data, to=f"{i % 5}.bin", metadata={"i": i})
    print(i, flush=True)
"""


def test_a_killed_writer_leaves_only_whole_files(dash_root):
    child = subprocess.Popen([sys.executable, "-c", WRITER, dash_root], stdout=subprocess.PIPE,
                             text=True)
    for _ in range(12):  # a dozen saves committed, then kill it mid-way through the next
        child.stdout.readline()
    child.kill()
    child.wait()
    with load("alice/proj/kill", dash_root=dash_root) as view:
        records = view.files.list()
        assert 1 <= len(records) <= 5
        for record in records:
            i = record["metadata"]["i"]
            expected = hashlib.sha256(str(i).encode()).digest() * (8192 * (1 + i % 4))
            assert view.files(f"ckpt/{record['filename']}").read_bytes() == expected
    from ml_dash import check
    assert check("alice/proj/kill", dash_root=dash_root, repair=True).ok  # leftovers removed
    assert check("alice/proj/kill", dash_root=dash_root).ok
    with Experiment(prefix="alice/proj/kill", dash_root=dash_root).run as exp:
        exp.files("ckpt").save_blob(b"after", to="0.bin")
        assert exp.files("ckpt/0.bin").read_text() == "after"


def test_check_verifies_file_contents_and_removes_leftovers(dash_root):
    from ml_dash import check
    with Experiment(prefix="alice/proj/chk", dash_root=dash_root).run as exp:
        exp.params.set(a=1)
        exp.log("hello")
        kept = exp.files.save_blob(b"kept", to="a.bin")
        damaged = exp.files.save_blob(b"original", to="b.bin")
    assert check("alice/proj/chk", dash_root=dash_root).ok
    folder = os.path.join(exp.path, "files")
    with open(os.path.join(folder, "0123abcd" * 4), "wb") as handle:  # as a killed save leaves it
        handle.write(b"orphan")
    with open(os.path.join(folder, damaged["id"]), "r+b") as handle:
        handle.write(b"X")
    report = check("alice/proj/chk", dash_root=dash_root)
    assert not report.ok
    assert any("'b.bin'" in p and "damaged" in p for p in report.problems)
    assert any("0123abcd" in p for p in report.problems)
    assert not any("'a.bin'" in p for p in report.problems)
    repaired = check("alice/proj/chk", dash_root=dash_root, repair=True)
    assert any("0123abcd" in r for r in repaired.repaired)
    assert not os.path.exists(os.path.join(folder, "0123abcd" * 4))
    assert os.path.exists(os.path.join(folder, kept["id"]))
    assert [p for p in repaired.problems if "b.bin" in p]  # lost contents stay reported
    os.unlink(os.path.join(folder, kept["id"]))
    assert any("'a.bin'" in p and "missing" in p
               for p in check("alice/proj/chk", dash_root=dash_root).problems)


# -- folder or file: decided by the call, not by a dot in the name ----------------------


def test_a_dotted_folder_is_a_folder_when_a_file_is_put_in_it(exp, source):
    record = exp.files("checkpoints/v1.2").upload(source)
    assert (record["path"], record["filename"]) == ("/checkpoints/v1.2", "model.pt")
    assert exp.files("checkpoints/v1.2/model.pt").read_bytes() == source.read_bytes()
    assert [r["filename"] for r in exp.files("checkpoints/v1.2").list()] == ["model.pt"]
    exp.files("runs/v0.9").save_text("x", to="notes.txt")
    assert exp.files("runs/v0.9").exists() and exp.files("runs/v0.9/notes.txt").exists()
    # A content save without to= stores the handle's own path, dot or not.
    assert exp.files("configs/settings").save_json({"a": 1})["filename"] == "settings"
    assert json.loads(exp.files("configs/settings").read_text()) == {"a": 1}


def test_stored_paths_form_a_tree(exp):
    exp.files("a").save_text("file", to="b.txt")
    with pytest.raises(ValueError, match="'a/b.txt' is a stored file, not a folder"):
        exp.files("a/b.txt").save_text("under a file", to="c.txt")
    with pytest.raises(ValueError, match="at 'a': it is a folder of stored files"):
        exp.files.save_text("over a folder", to="a")
    assert [(r["path"], r["filename"]) for r in exp.files.list()] == [("/a", "b.txt")]
    assert len(content_files(exp)) == 1  # nothing of the refused saves stays on disk


def test_record_paths_are_slash_rooted_and_both_forms_are_taken(exp, source):
    assert exp.files("/models/").upload(source)["path"] == "/models"
    assert exp.files.save_text("top", to="top.txt")["path"] == "/"
    assert exp.files("/models").list() == exp.files("models").list()
    assert exp.files("/models/model.pt").read_bytes() == source.read_bytes()
    assert sorted(r["path"] for r in exp.files.list()) == ["/", "/models"]
    listed = {r["filename"]: r for r in exp.files.list()}
    assert exp.files.list("*.pt") == [listed["model.pt"]]


def test_files_keywords_of_the_reference(exp, source, tmp_path):
    record = exp.files(prefix="/models", description="best", tags=["ckpt"],
                       metadata={"epoch": 3}).upload(source)
    assert (record["path"], record["description"], record["tags"], record["metadata"]) == (
        "/models", "best", ["ckpt"], {"epoch": 3})
    assert exp.files(dir="models").list() == [record]
    assert exp.files("models", tags=["ckpt"]).save_text("x", to="b.txt")["tags"] == ["ckpt"]
    exp.files("other").save_text("untagged", to="c.txt")
    assert [r["filename"] for r in exp.files(tags=["ckpt"]).list()] == ["b.txt", "model.pt"]
    # file_id= names one stored file: download (to dest_path= or to=), read, update, delete.
    by_id = exp.files(file_id=record["id"], dest_path=str(tmp_path / "d" / "copy.pt"))
    assert by_id.download() == str(tmp_path / "d" / "copy.pt")
    assert by_id.download(to=str(tmp_path)) == str(tmp_path / "model.pt")
    assert by_id.read_bytes() == source.read_bytes() and by_id.exists()
    with pytest.raises(TypeError, match="one argument"):
        exp.files("a", prefix="b")
    with pytest.raises(TypeError, match="file_id"):
        exp.files(file_id=12)
    with pytest.raises(ValueError, match="not both"):
        exp.files("models", file_id=record["id"])
    with pytest.raises(TypeError, match="tags"):
        exp.files("models", tags="ckpt")


def test_an_unknown_file_id_is_an_error_naming_it(exp):
    exp.files.save_text("kept", to="a.txt")
    for call in (lambda h: h.download(), lambda h: h.read_text(), lambda h: h.delete(),
                 lambda h: h.update(description="x"), lambda h: exp.files().duplicate("nope", to="b")):
        with pytest.raises(FileNotFoundError, match="'nope'"):
            call(exp.files(file_id="nope"))
    assert not exp.files(file_id="nope").exists()
    assert exp.files("a.txt").read_text() == "kept"


def test_update_replaces_only_what_is_given(exp):
    record = exp.files("m").save_text("w", to="a.txt", description="old", tags=["t"],
                                      metadata={"k": 1})
    updated = exp.files(file_id=record["id"]).update(description="new")
    assert (updated["description"], updated["tags"], updated["metadata"]) == ("new", ["t"], {"k": 1})
    updated = exp.files("m/a.txt", tags=["best"], metadata={"k": 2}).update()
    assert (updated["tags"], updated["metadata"]) == (["best"], {"k": 2})
    assert exp.files("m").list()[0]["description"] == "new"
    assert exp.files("m/a.txt").read_text() == "w" and updated["checksum"] == record["checksum"]
    with pytest.raises(ValueError, match="needs description="):
        exp.files("m/a.txt").update()
    with pytest.raises(TypeError, match="metadata"):
        exp.files("m/a.txt").update(metadata=[1])
    assert exp.files("m").list()[0]["metadata"] == {"k": 2}


def test_a_bare_filename_finds_the_one_file_of_that_name(exp, tmp_path):
    exp.files("models").save_text("weights", to="model.txt")
    assert exp.files("model.txt").read_text() == "weights"
    assert exp.files("model.txt").download(to=str(tmp_path / "m.txt")) == str(tmp_path / "m.txt")
    exp.files("backup").save_text("older", to="model.txt")
    with pytest.raises(ValueError, match="models/model.txt.*whole path"):
        exp.files("model.txt").read_text()
    assert exp.files("model.txt").exists()
    assert exp.files("backup/model.txt").delete()["path"] == "/backup"
    assert exp.files("model.txt").delete()["path"] == "/models"
    assert exp.files.list() == []


def test_glob_list_download_and_delete(exp, tmp_path):
    for name in ("images/a.png", "images/b.png", "images/deep/c.png", "images/notes.txt", "d.png"):
        exp.files.save_text(name, to=name)
    assert [r["filename"] for r in exp.files.list("images/*.png")] == ["a.png", "b.png", "c.png"]
    assert [r["filename"] for r in exp.files.list("**/deep/*.png")] == ["c.png"]
    # The literal folder of a pattern is not repeated under to=; deeper paths are kept.
    paths = exp.files.download("images/*.png", to=str(tmp_path / "out"))
    assert paths == [str(tmp_path / "out" / p) for p in ("a.png", "b.png", os.path.join("deep", "c.png"))]
    assert open(paths[2]).read() == "images/deep/c.png"
    # A plain path gives one file; a glob a list.
    assert exp.files.download("images/notes.txt", to=str(tmp_path)) == str(tmp_path / "notes.txt")
    assert exp.files("images").delete("notes.txt")["filename"] == "notes.txt"
    removed = exp.files.delete("images/*.png")
    assert [r["filename"] for r in removed] == ["a.png", "b.png", "c.png"]
    assert all(r["deletedAt"].endswith("Z") for r in removed)
    with pytest.raises(FileNotFoundError, match=r"'images/\*.png'"):
        exp.files.delete("images/*.png")
    with pytest.raises(FileNotFoundError, match=r"'\*.zip'"):
        exp.files.download("*.zip", to=str(tmp_path))
    with pytest.raises(ValueError, match="root folder needs a path or a pattern"):
        exp.files.delete()
    assert [r["filename"] for r in exp.files.list()] == ["d.png"]
    assert len(exp.files.delete("**")) == 1 and content_files(exp) == []


def test_duplicate_paths_are_from_the_root_and_sources_are_checked(exp):
    record = exp.files("ckpt").save_blob(b"weights", to="e3.pt", tags=["t"])
    copy = exp.files("ckpt").duplicate(record, to="/models/latest.pt")  # the handle's path plays no part
    assert (copy["path"], copy["filename"], copy["tags"]) == ("/models", "latest.pt", ["t"])
    assert exp.files().duplicate(record["id"], to="top.pt")["path"] == "/"
    retagged = exp.files(tags=["latest"]).duplicate(record, to="models/alias.pt")
    assert (retagged["tags"], retagged["contentType"]) == (["latest"], record["contentType"])
    for bad in (123, None, {"wrong": "key"}, ""):
        with pytest.raises(ValueError, match="source must be"):
            exp.files().duplicate(bad, to="x.pt")
    with open(os.path.join(exp.path, "files", record["id"]), "r+b") as handle:
        handle.write(b"X")  # the source's contents damaged on disk
    with pytest.raises(StorageError, match="damaged"):
        exp.files().duplicate(record, to="models/latest.pt")
    assert exp.files("models/latest.pt").read_bytes() == b"weights"  # the old alias is kept
    assert len(content_files(exp)) == 4


def test_save_pkl_and_save_of_an_array(exp):
    import pickle

    import numpy as np
    exp.files("p").save_pkl({"a": [1, 2]}, to="state.pkl")
    assert pickle.loads(exp.files("p/state.pkl").read_bytes()) == {"a": [1, 2]}
    with pytest.raises(TypeError, match="cannot pickle"):
        exp.files("p").save_pkl(lambda: 1, to="f.pkl")
    pytest.importorskip("PIL.Image")
    assert exp.files("img").save(np.zeros((4, 4)), to="z.png")["contentType"] == "image/png"
    assert exp.files.list("*.pkl")[0]["contentType"] == "application/octet-stream"


def test_bindrs_file_a_save_and_list_it_across_folders(dash_root):
    with Experiment(prefix="alice/proj/b", dash_root=dash_root, bindrs=["paper"]).run as exp:
        assert exp.bindrs == ["paper"] and list(exp.bindrs) == ["paper"]
        exp.files("models", bindrs=["best"]).save_text("w", to="a.pt")
        exp.bindrs("best").save_text("x", to="plots/loss.txt")
        exp.files("models").save_text("other", to="b.pt")
        listed = exp.bindrs("best").list()
        assert [(r["path"], r["filename"]) for r in listed] == [("/models", "a.pt"), ("/plots", "loss.txt")]
        assert exp.bindrs("nobody").list() == []
        with pytest.raises(TypeError, match="bindr"):
            exp.bindrs(3)


# -- save_video (extra "video": imageio + imageio-ffmpeg) -----------------------------------


def _read_video(exp, path):
    import imageio.v3 as iio
    data = exp.files(path).read_bytes()
    extension = os.path.splitext(path)[1]
    return iio.imread(data, extension=extension), iio.immeta(data, extension=extension)


@pytest.mark.parametrize("kind", ["gray float", "rgb float", "float32", "uint8", "bool", "stacked"])
def test_save_video_frames_of_every_kind_round_trip(exp, kind):
    pytest.importorskip("imageio_ffmpeg")
    import numpy as np
    rng = np.random.default_rng(0)
    frames = {
        "gray float": [np.full((32, 48), i / 9) for i in range(10)],
        "rgb float": [np.full((32, 48, 3), i / 9) for i in range(10)],
        "float32": [np.full((32, 48), i / 9, dtype=np.float32) for i in range(10)],
        "uint8": [np.full((32, 48), i * 25, dtype=np.uint8) for i in range(10)],
        "bool": [np.full((32, 48), i % 2 == 1) for i in range(10)],
        "stacked": rng.random((10, 32, 48, 3)),
    }[kind]
    record = exp.files("videos").save_video(frames, to="clip.mp4", fps=25)
    assert (record["path"], record["filename"], record["contentType"]) == ("/videos", "clip.mp4", "video/mp4")
    back, meta = _read_video(exp, "videos/clip.mp4")
    assert back.shape[:3] == (10, 32, 48) and meta["fps"] == 25
    if kind != "stacked":  # flat frames survive lossy coding within a few levels
        expected = np.asarray(frames, dtype=float)
        expected = expected * 255 if kind != "uint8" else expected
        assert abs(back[..., 0].mean(axis=(1, 2)) - expected.reshape(10, -1).mean(axis=1)).max() < 8


def test_save_video_gif_and_encoder_options(exp):
    pytest.importorskip("imageio_ffmpeg")
    import numpy as np
    frames = [np.eye(16) * (i % 2) for i in range(4)]
    record = exp.files("v").save_video(frames, "blink.gif", fps=5)  # to= may be positional
    back, meta = _read_video(exp, "v/blink.gif")
    assert record["contentType"] == "image/gif" and back.shape[0] == 4 and meta["duration"] == 200
    small = exp.files("v").save_video(frames * 8, to="low.mp4", quality=1)
    large = exp.files("v").save_video(frames * 8, to="high.mp4", quality=10)
    assert small["sizeBytes"] < large["sizeBytes"]


def test_save_video_bad_input_names_the_argument_and_stores_nothing(exp):
    pytest.importorskip("imageio_ffmpeg")
    import numpy as np
    exp.files("v").save_text("kept", to="a.txt")
    cases = [
        ([], ValueError, "frame_stack is empty"),
        ("frames.mp4", TypeError, "frame_stack"),
        (7, TypeError, "frame_stack"),
        ([np.zeros((4, 4)), np.zeros((4, 5))], ValueError, "frame 1 has shape"),
        ([np.full((4, 4), np.nan)], ValueError, "NaN"),
        ([np.full((4, 4), 300)], ValueError, "outside 0-255"),
        (np.zeros((2, 4, 4, 5)), ValueError, "H x W"),
        ([np.array([["a"]])], TypeError, "numbers"),
        ([None], TypeError, "frame 0"),
    ]
    for frames, error, words in cases:
        with pytest.raises(error, match=words):
            exp.files("v").save_video(frames, to="x.mp4")
    with pytest.raises(ValueError, match="fps"):
        exp.files("v").save_video([np.zeros((4, 4))], to="x.mp4", fps=0)
    with pytest.raises(ValueError, match="video extension"):
        exp.files("v").save_video([np.zeros((4, 4))], to="x")
    with pytest.raises(ValueError, match="no format '.xyz'"):
        exp.files("v").save_video([np.zeros((4, 4))], to="x.xyz")
    with pytest.raises(ValueError, match="encoder refused.*nonsense"):
        exp.files("v").save_video([np.zeros((16, 16))], to="x.mp4", nonsense=1)
    assert [r["filename"] for r in exp.files.list()] == ["a.txt"]
    assert len(content_files(exp)) == 1


def test_save_video_an_encoder_failure_stores_nothing_and_prints_nothing(exp, capfd):
    pytest.importorskip("imageio_ffmpeg")
    import gc

    import numpy as np
    frames = [np.zeros((16, 16))] * 3
    good = exp.files("v").save_video(frames, to="a.mp4")
    capfd.readouterr()
    with pytest.raises(ValueError, match=r"codec='nope'.*Unknown encoder 'nope'"):
        exp.files("v").save_video(frames, to="a.mp4", codec="nope")  # ffmpeg fails, imageio does not
    with pytest.raises(ValueError, match=r"pixelformat='bogus'.*pixel format"):
        exp.files("v").save_video(frames, to="a.mp4", pixelformat="bogus")
    with pytest.raises(ValueError, match=r"fps=1e-09.*at least 0\.0015"):
        exp.files("v").save_video(frames, to="b.gif", fps=1e-9)
    with pytest.raises(ValueError, match="loop=-1"):
        exp.files("v").save_video(frames, to="b.gif", loop=-1)  # Pillow fails as the GIF is written
    gc.collect()  # a writer left unclosed would print its failure again here
    assert capfd.readouterr().err == ""
    assert exp.files.list() == [good] and content_files(exp) == [good["id"]]
    assert exp.files("v/a.mp4").read_bytes()[4:8] == b"ftyp"


def test_save_text_that_is_not_valid_unicode_names_the_file(exp):
    exp.files.save_text("kept", to="s.txt")
    for text, position in (("\ud800", 0), ("ok \udcff tail", 3)):
        with pytest.raises(ValueError, match=rf"save_text\(\) to 'notes/s.txt': the text is not valid "
                                             rf"UTF-8 \(a lone surrogate '\\u(d800|dcff)' at position {position},"):
            exp.files("notes").save_text(text, to="s.txt")
        with pytest.raises(ValueError, match=r"save_text\(\) to 's.txt': "):
            exp.files.save_text(text, to="s.txt")
    assert [r["filename"] for r in exp.files.list()] == ["s.txt"] and len(content_files(exp)) == 1
    assert exp.files("s.txt").read_text() == "kept"


BLOCKED_VIDEO = """
import sys
sys.modules["imageio"] = None  # as if the video extra were not installed
import numpy as np
from ml_dash import Experiment
with Experiment(prefix="alice/proj/novideo", dash_root=sys.argv[1]).run as exp:
    try:
        exp.files("v").save_video([np.zeros((4, 4))], to="a.mp4")
    except ImportError as exc:
        print(exc)
    print(exp.files.list())
"""


def test_save_video_without_the_extra_names_it(dash_root):
    out = subprocess.run([sys.executable, "-c", BLOCKED_VIDEO, dash_root], capture_output=True,
                         text=True, timeout=120, check=True)
    message, listing = out.stdout.splitlines()
    assert message == f"files.save_video() this needs imageio, from the 'video' extra: {install_hint('video')}"
    assert listing == "[]"


def test_import_ml_dash_loads_no_video_or_image_library():
    code = ("import sys, ml_dash; print([m for m in ('imageio', 'imageio_ffmpeg', 'PIL', 'matplotlib')"
            " if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_records_of_earlier_versions_are_shown_rooted(exp, tmp_path):
    from ml_dash.storage.codec import encode_value
    from ml_dash.storage.keys import FILES_DB
    record = exp.files("models").save_blob(b"old", to="a.pt")
    # As versions before '/'-rooted folders stored it: folder "models", no bindrs.
    legacy = {key: value for key, value in record.items() if key != "bindrs"}
    legacy["path"] = "models"
    exp._open_session().stage_record((FILES_DB, b"models/a.pt", encode_value(legacy)))
    exp.flush()
    assert [r["path"] for r in exp.files.list()] == ["/models"]
    assert exp.files(file_id=record["id"]).download(to=str(tmp_path)) == str(tmp_path / "a.pt")
    assert exp.files("models/a.pt").update(tags=["kept"])["path"] == "/models"


def test_a_crafted_record_is_refused_by_update_and_duplicate(exp):
    from ml_dash.storage.codec import encode_value
    from ml_dash.storage.keys import FILES_DB
    record = exp.files("cfg").save_text("x", to="a.txt")
    crafted = dict(record, filename="../../escape.txt")
    exp._open_session().stage_record((FILES_DB, b"cfg/a.txt", encode_value(crafted)))
    exp.flush()
    with pytest.raises(StorageError, match="'cfg/a.txt' cannot be updated.*filename"):
        exp.files("cfg/a.txt").update(description="new")
    with pytest.raises(StorageError, match="cannot be duplicated"):
        exp.files().duplicate(record["id"], to="b.txt")
    assert [r["filename"] for r in exp.files.list()] == ["../../escape.txt"]  # listed, untouched


# -- a save, update or delete whose commit fails -------------------------------------

def test_a_save_update_or_delete_whose_commit_fails_stored_nothing(exp, dash_root):
    from ml_dash.storage import faults
    first = exp.files.save_text("v1", to="a.txt", description="first")
    exp.files.save_text("other", to="b.txt")
    calls = {"save": lambda: exp.files.save_text("v2", to="a.txt"),
             "duplicate": lambda: exp.files.duplicate(first, to="c.txt"),
             "update": lambda: exp.files("a.txt").update(description="second"),
             "delete": lambda: exp.files("b.txt").delete()}
    for name, call in calls.items():
        faults.configure("before_commit:enospc")  # the disk is full as the record commits
        try:
            with pytest.raises(StorageError, match="No space left"):
                call()
        finally:
            faults.configure(None)
        exp.flush()  # the retry a full disk calls for: nothing of the call was kept staged
        assert [r["filename"] for r in exp.files.list()] == ["a.txt", "b.txt"], name
        assert exp.files("a.txt").read_text() == "v1" and exp.files("b.txt").read_text() == "other"
        assert exp.files("a.txt").list()[0]["description"] == "first"
        assert len(content_files(exp)) == 2, name  # what the call wrote is gone
    second = exp.files.save_text("v2", to="a.txt")  # and a save that returned removed v1's contents
    assert content_files(exp) == sorted([second["id"], exp.files("b.txt").list()[0]["id"]])
    exp.run.complete()
    report = ml_dash.check("alice/proj/exp", dash_root=dash_root)
    assert report.ok, report.problems


def test_a_save_is_committed_alone_when_a_staged_point_cannot_be_stored(exp, dash_root):
    exp.metrics("train").log(step=0, note="\ud800")  # refused only by the flush's encoder
    record = exp.files.save_text("kept", to="a.txt")
    assert exp.files("a.txt").read_text() == "kept" and record["filename"] == "a.txt"
    exp.files("a.txt").update(tags=["x"])
    assert exp.files("a.txt").list()[0]["tags"] == ["x"]
    with pytest.raises(TypeError, match="'train'.*surrogates not allowed"):  # still the flush's to refuse
        exp.flush()
    exp.flush()


@pytest.fixture
def full_disk(tmp_path):
    """``(folder, filler)``: a real 2 MB filesystem, 1.5 MB of it taken by ``filler``;
    skipped where mounting one is not allowed."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                                           capture_output=True).returncode:
        pytest.skip("needs root to mount a tmpfs")
    filler = folder / "filler"
    filler.write_bytes(b"\0" * 1_500_000)
    try:
        yield str(folder), str(filler)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_saves_and_deletes_on_a_really_full_disk_store_all_or_nothing(full_disk):
    folder, filler = full_disk
    dash_root = os.path.join(folder, "dash")
    stored: dict = {}
    failed = 0
    with Experiment(prefix="alice/proj/exp", dash_root=dash_root).run as exp:
        for i in range(400):
            name = f"f{i % 60}.txt"
            try:  # a long description: the record needs more pages than the contents
                exp.files.save_text(str(i), to=name, description="d" * 30_000)
                stored[name] = str(i)
            except StorageError:
                failed += 1
            if i % 3 == 0 and name in stored:
                try:
                    exp.files(name).delete()
                    del stored[name]
                except StorageError:
                    failed += 1
        assert failed and len(stored) > 5, "the disk never filled, or was full at once"
        os.remove(filler)
        exp.flush()
        assert {r["filename"]: exp.files(r["filename"]).read_text() for r in exp.files.list()} == stored
        assert len(content_files(exp)) == len(stored)
    report = ml_dash.check("alice/proj/exp", dash_root=dash_root)
    assert report.ok, report.problems
