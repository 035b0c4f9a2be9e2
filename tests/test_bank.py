"""FeatureBank: lazy reading, lookups, subsets; writer atomicity; backbone mixing refused."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from sbd.features.bank import BankWriter, FeatureBank, check_same_backbone, write_bank


def _bank(path, backbone="efficientnet-lite0", n=10, d=6, seed=0, dtype="float16"):
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((n, d)).astype(np.float32)
    wnids = [f"n0{1000000 + i % 3:07d}" for i in range(n)]
    ids = [f"{w}_{i}" for i, w in enumerate(wnids)]
    paths = [f"imagenet/train/{w}/{iid}.JPEG" for w, iid in zip(wnids, ids)]
    write_bank(path, feats, wnids, ids, paths, attrs={"backbone": backbone, "layer": "x"},
               dtype=dtype)
    return feats, wnids, ids


def test_read_lazily_lookup_subset(tmp_path):
    feats, wnids, ids = _bank(tmp_path / "b.h5", n=10, dtype="float32")
    with FeatureBank(tmp_path / "b.h5") as bank:
        assert (len(bank), bank.dim, bank.backbone) == (10, 6, "efficientnet-lite0")
        assert list(bank.wnids) == wnids and list(bank.image_ids) == ids
        blocks = list(bank.iter_blocks(4))
        assert [s for s, _ in blocks] == [0, 4, 8]
        assert all(b.dtype == np.float32 for _, b in blocks)
        np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), feats)
        np.testing.assert_array_equal(bank.lookup([ids[7], ids[2], ids[7]]), feats[[7, 2, 7]])
        np.testing.assert_array_equal(bank.rows([9, 0, 1, 2]), feats[[9, 0, 1, 2]])
        sub = bank.subset([wnids[1]])
        assert sub.dtype == np.int64 and list(sub) == [i for i, w in enumerate(wnids) if w == wnids[1]]
        np.testing.assert_array_equal(bank.load(), feats)
        with pytest.raises(KeyError, match="n09999999_1"):
            bank.lookup([ids[0], "n09999999_1"])


def test_float16_storage_is_contiguous_and_memory_mapped(tmp_path):
    feats, _, _ = _bank(tmp_path / "b.h5", n=300, d=8)
    with h5py.File(tmp_path / "b.h5") as f:
        ds = f["features"]
        assert ds.dtype == np.float16 and ds.chunks is None and ds.compression is None
        for k in ("backbone", "layer", "sbd_version", "created"):
            assert k in f.attrs
    with FeatureBank(tmp_path / "b.h5") as bank:
        assert bank.storage == "contiguous" and isinstance(bank.array(), np.memmap)
        np.testing.assert_allclose(bank.load(), feats, rtol=1e-3, atol=1e-3)
        np.testing.assert_array_equal(bank.array()[[7, 2]], feats.astype(np.float16)[[7, 2]])
        np.testing.assert_array_equal(bank.rows([7, 2, 7]), bank.load()[[7, 2, 7]])


def test_a_gzip_bank_of_earlier_sbd_opens_and_migrates_in_place(tmp_path):
    """The chunked gzip format still reads (through h5py, no map); ``python -m
    sbd.features.bank migrate`` rewrites it contiguous with its labels, attrs and tables."""
    import subprocess
    import sys

    path = tmp_path / "old.h5"
    feats = np.random.default_rng(3).normal(size=(500, 8)).astype(np.float32)
    wn = [f"n{i % 5:08d}" for i in range(500)]
    with BankWriter(path, 8, attrs={"backbone": "resnet50"}, storage="gzip") as w:
        w.append(feats, wn, [f"i{i}" for i in range(500)], [f"p{i}" for i in range(500)])
        w.set_table("failed", {"path": ["x.JPEG"], "error": ["truncated"]})
    with FeatureBank(path) as bank:
        assert bank.storage == "chunked" and bank.array() is None
        before = bank.load()
    out = subprocess.run([sys.executable, "-m", "sbd.features.bank", "migrate", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "contiguous" in out.stdout, out.stderr
    with FeatureBank(path) as bank:
        assert bank.storage == "contiguous" and bank.backbone == "resnet50"
        np.testing.assert_array_equal(bank.load(), before)
        assert list(bank.wnids) == wn and list(bank.paths)[-1] == "p499"
        assert list(bank.failed["error"]) == ["truncated"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.h5"]  # no temporary left


def test_writer_leaves_nothing_on_error(tmp_path):
    with pytest.raises(ValueError, match=r"\(k, 4\)"):
        with BankWriter(tmp_path / "b.h5", 4, attrs={"backbone": "resnet50"}) as w:
            w.append(np.zeros((2, 4)), ["a", "b"], ["a_1", "b_1"], ["p", "q"])
            w.append(np.zeros((2, 5)), ["a", "b"], ["a_1", "b_1"], ["p", "q"])
    assert list(tmp_path.iterdir()) == []


def test_not_a_bank(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["features"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match="wnid"):
        FeatureBank(tmp_path / "x.h5")
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        FeatureBank(tmp_path / "nope.h5")


def test_truncated_bank_is_refused_with_the_fix(tmp_path):
    """A bank cut off (a copy interrupted) is never read as garbage: a named error."""
    path = tmp_path / "bank.h5"
    _bank(path, n=400, d=64)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(ValueError) as err:
        FeatureBank(path)
    msg = str(err.value)
    assert str(path) in msg and "is cut off" in msg and "extract_features computes it" in msg


def test_mixing_backbones_is_refused(tmp_path):
    _bank(tmp_path / "a.h5", backbone="resnet50")
    _bank(tmp_path / "b.h5", backbone="efficientnet-lite0")
    _bank(tmp_path / "c.h5", backbone="resnet50")
    assert check_same_backbone(tmp_path / "a.h5", tmp_path / "c.h5") == "resnet50"
    with FeatureBank(tmp_path / "a.h5") as a:
        with pytest.raises(ValueError, match="different backbones.*resnet50.*efficientnet-lite0"):
            check_same_backbone(a, tmp_path / "b.h5")
