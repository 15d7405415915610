"""exp.files: saving, listing, downloading, deleting, duplicating; views; extras."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

import ml_dash
from ml_dash import Experiment, StorageError, load


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
    with pytest.raises(ImportError, match=r"ml-dash\[torch\]"):
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
