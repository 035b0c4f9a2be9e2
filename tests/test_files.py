"""sbd.files, the one staged-write helper, on real files: a writer that raises leaves the
destination as it was, the temporary name keeps the suffix (NumPy, PIL and h5py choose the
format by it), concurrent writers leave one whole file, folders are swapped whole, and
records tell an intact output from a changed one."""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest
from PIL import Image

from sbd.files import (file_sha256, record, records_intact, replace_path, staged_dir,
                       staged_path, write_bytes, write_json, write_text)


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_destination_untouched_when_the_writer_raises(tmp_path):
    dst = tmp_path / "out.txt"
    dst.write_text("old\n")
    with pytest.raises(RuntimeError):
        with staged_path(dst) as tmp:
            tmp.write_text("half of the ne")
            raise RuntimeError("killed")
    assert dst.read_text() == "old\n"
    assert _hidden(tmp_path) == []          # the temporary file is gone too


def test_no_destination_appears_when_the_first_write_raises(tmp_path):
    dst = tmp_path / "sub" / "a.npy"
    with pytest.raises(ValueError):
        with staged_path(dst) as tmp:
            np.save(tmp, np.arange(3))
            raise ValueError
    assert not dst.exists() and _hidden(dst.parent) == []


def test_suffix_is_kept_for_writers_that_choose_the_format_by_it(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    with staged_path(tmp_path / "x.npy") as tmp:
        assert tmp.suffix == ".npy" and tmp.parent == tmp_path
        np.save(tmp, a)                     # would append .npy to a name without it
    with staged_path(tmp_path / "x.npz") as tmp:
        np.savez(tmp, a=a)
    with staged_path(tmp_path / "x.png") as tmp:
        Image.new("RGB", (4, 4), (10, 20, 30)).save(tmp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "x.npz", "x.png"]
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), a)
    with np.load(tmp_path / "x.npz") as z:
        np.testing.assert_array_equal(z["a"], a)
    assert Image.open(tmp_path / "x.png").format == "PNG"


def test_write_helpers_write_exact_bytes(tmp_path):
    assert write_text(tmp_path / "t.txt", "é\n").read_bytes() == "é\n".encode()
    assert write_bytes(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert (write_json(tmp_path / "j.json", {"b": 1, "a": [1]}).read_text()
            == '{\n  "b": 1,\n  "a": [\n    1\n  ]\n}\n')


def _write_many(path, tag, n):
    for _ in range(n):
        write_text(path, tag * 20000)


def test_concurrent_writers_leave_one_whole_file(tmp_path):
    dst = tmp_path / "shared.txt"
    threads = [threading.Thread(target=_write_many, args=(dst, t, 20)) for t in "ab"]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(dst, t, 20)) for t in "cd"]
    for w in threads + procs:
        w.start()
    for w in threads + procs:
        w.join()
    assert all(p.exitcode == 0 for p in procs)
    text = dst.read_text()
    assert len(text) == 20000 and len(set(text)) == 1
    assert _hidden(tmp_path) == []


def test_staged_dir_replaces_a_full_folder_whole(tmp_path):
    dst = tmp_path / "images"
    (dst / "old").mkdir(parents=True)
    (dst / "old" / "a.png").write_bytes(b"old")
    with staged_dir(dst) as tmp:
        (tmp / "new").mkdir()
        (tmp / "new" / "b.png").write_bytes(b"new")
        assert (dst / "old" / "a.png").is_file()    # untouched until the block ends
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*")) == ["new", "new/b.png"]
    assert _hidden(tmp_path) == []
    with pytest.raises(OSError):
        with staged_dir(dst) as tmp:
            (tmp / "c.png").write_bytes(b"half")
            raise OSError("disk full")
    assert (dst / "new" / "b.png").read_bytes() == b"new" and _hidden(tmp_path) == []


def test_replace_path_moves_files_and_folders(tmp_path):
    (tmp_path / "src.txt").write_text("new")
    (tmp_path / "dst.txt").write_text("old")
    replace_path(tmp_path / "src.txt", tmp_path / "dst.txt")
    assert (tmp_path / "dst.txt").read_text() == "new" and not (tmp_path / "src.txt").exists()
    (tmp_path / "d1").mkdir()
    (tmp_path / "d1" / "f").write_text("1")
    replace_path(tmp_path / "d1", tmp_path / "deep" / "d2")   # parent created
    assert (tmp_path / "deep" / "d2" / "f").read_text() == "1"


def test_records_tell_intact_from_changed(tmp_path):
    (tmp_path / "tree" / "a").mkdir(parents=True)
    (tmp_path / "tree" / "a" / "x.bin").write_bytes(b"abc")
    (tmp_path / "one.npz").write_bytes(b"12345")
    recs = {rel: record(tmp_path / rel) for rel in ("tree", "one.npz")}
    assert recs["one.npz"] == {"files": 1, "bytes": 5, "sha256": file_sha256(tmp_path / "one.npz")}
    assert recs["tree"]["files"] == 1 and recs["tree"]["bytes"] == 3
    assert records_intact(tmp_path, recs)
    (tmp_path / "tree" / "a" / "y.bin").write_bytes(b"")
    assert not records_intact(tmp_path, recs)
    (tmp_path / "tree" / "a" / "y.bin").unlink()
    (tmp_path / "one.npz").write_bytes(b"1234")
    assert not records_intact(tmp_path, recs)
