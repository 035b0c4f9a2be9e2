"""Extraction into feature banks on a tiny GOD-layout folder of real photos (JPEGs cut
from scikit-image's sample images): features equal a direct model call; a killed run
resumes; shards + merge equal one shot; unreadable images are skipped and listed;
stimulus images in the bank folder are excluded; the step logs metrics and artifacts."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sbd.data import layout
from sbd.features.bank import FeatureBank
from sbd.features.extract import embed_images, extract_dataset, extract_source, merge

skdata = pytest.importorskip("skimage.data")

BACKBONE = "efficientnet-lite0"
REPO = Path(__file__).resolve().parents[1]
# WordNet ids of the photos: tabby, espresso, missile, tripod, coin
PHOTOS = {"chelsea": "n02123045", "coffee": "n07920052", "rocket": "n03773504",
          "camera": "n04485082", "coins": "n13388245"}


def _crop(a: np.ndarray, rng, half: int, size: int = 64) -> Image.Image:
    """A random square crop of the left (half=0) or right (half=1) half, resized to size."""
    h, w = a.shape[:2]
    a = a[:, :w // 2] if half == 0 else a[:, w // 2:]
    h, w = a.shape[:2]
    s = int(min(h, w) * rng.uniform(0.7, 1.0))
    y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
    return Image.fromarray(a[y:y + s, x:x + s]).convert("RGB").resize((size, size))


def make_folder(root: Path, seed: int = 0) -> dict:
    """GOD layout: 5 training + 2 test stimuli, a bank of 5 wnids × 2 images, plus (in the
    bank) a stimulus copied under another name, a file named by a test stimulus id, a
    truncated JPEG and a text file named .JPEG."""
    rng = np.random.default_rng(seed)
    arrays = {w: getattr(skdata, n)() for n, w in PHOTOS.items()}
    train_dir, test_dir = layout.images_dir(root, "training"), layout.images_dir(root, "test")
    for d in (train_dir, test_dir):
        d.mkdir(parents=True)
    for w, a in arrays.items():
        bank = layout.bank_dir(root) / w
        bank.mkdir(parents=True)
        for j in (1, 2):
            _crop(a, rng, 0).save(bank / f"{w}_{j}.JPEG", quality=90)
        _crop(a, rng, 1).save(train_dir / f"{w}_101.JPEG", quality=90)
    test_ids = []
    for w in list(arrays)[:2]:
        _crop(arrays[w], rng, 1).save(test_dir / f"{w}_201.JPEG", quality=90)
        test_ids.append(f"{w}_201")
    w0, w1 = list(arrays)[:2]
    dup = layout.bank_dir(root) / w0 / f"{w0}_900.JPEG"
    shutil.copy(train_dir / f"{w0}_101.JPEG", dup)                      # same image, new name
    by_id = layout.bank_dir(root) / w1 / f"{test_ids[1]}.JPEG"
    _crop(arrays[w1], rng, 0).save(by_id, quality=90)                     # a test id in the bank
    corrupt = layout.bank_dir(root) / w1 / f"{w1}_13.JPEG"
    corrupt.write_bytes((train_dir / f"{w1}_101.JPEG").read_bytes()[:300])  # truncated
    text = layout.bank_dir(root) / w1 / f"{w1}_14.JPEG"
    text.write_text("not an image")
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    return dict(dup=rel(dup), by_id=rel(by_id), failed={rel(corrupt), rel(text)},
                dup_of=f"{w0}_101", id_excluded=test_ids[1], n_bank_listed=14)


def _copy_without_bank_features(src: Path, dst: Path) -> Path:
    """A copy of the folder holding the stimulus features but not the bank's."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("bank.h5", "bank.partial"))
    return dst


@pytest.fixture(scope="module")
def oneshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract") / "data"
    info = make_folder(root)
    t0 = time.perf_counter()
    paths = extract_dataset(root, BACKBONE, source="all", batch_size=4, num_workers=0,
                            chunk_size=4, progress=False)
    info["seconds"] = time.perf_counter() - t0
    return root, paths, info


def _assert_same_bank(a: Path, b: Path) -> None:
    with FeatureBank(a) as x, FeatureBank(b) as y:
        assert list(x.image_ids) == list(y.image_ids)
        assert list(x.wnids) == list(y.wnids) and list(x.paths) == list(y.paths)
        np.testing.assert_allclose(x.load(), y.load(), rtol=1e-2, atol=1e-2)
        assert sorted(x.excluded["image_id"]) == sorted(y.excluded["image_id"])
        assert sorted(x.failed["path"]) == sorted(y.failed["path"])
        assert x.backbone == y.backbone == BACKBONE


def test_files_and_features_equal_a_direct_model_call(oneshot):
    root, paths, _ = oneshot
    assert set(paths) == {"training", "test", "bank"}
    for s, p in paths.items():
        assert p == layout.features_file(root, BACKBONE, s) and p.is_file()
        assert not p.with_name(p.stem + ".partial").exists()
    with FeatureBank(paths["training"]) as tr, FeatureBank(paths["test"]) as te:
        assert len(tr) == 5 and len(te) == 2 and tr.dim == 1280
        assert all(i.endswith("_101") for i in tr.image_ids)
        assert list(tr.wnids) == sorted(PHOTOS.values())
    from sbd.features.backbones import get_backbone

    bb = get_backbone(BACKBONE, device="cpu")
    with FeatureBank(paths["bank"]) as bank:
        assert bank.dtype == np.float16 and bank.attrs["preprocessing"] == bb.preprocessing
        ids = list(bank.image_ids[:3])
        files = [root / p for p in bank.paths[:3]]
        with torch.inference_mode():
            direct = bb.model(torch.stack([bb.transform(Image.open(f)) for f in files])).numpy()
        got = bank.lookup(ids)
        np.testing.assert_allclose(got, direct, rtol=1e-2, atol=2e-3 * np.abs(direct).max())
        # the in-memory path gives the same numbers
        np.testing.assert_allclose(embed_images([Image.open(f) for f in files], bb), direct,
                                   rtol=1e-4, atol=1e-4)


def test_unreadable_images_are_skipped_and_listed(oneshot):
    root, paths, info = oneshot
    with FeatureBank(paths["bank"]) as bank:
        assert set(bank.failed["path"]) == info["failed"]
        assert all(e for e in bank.failed["error"])
        assert bank.attrs["n_failed"] == 2
        assert not set(bank.paths) & info["failed"]


def test_stimulus_images_are_not_in_the_bank(oneshot):
    root, paths, info = oneshot
    with FeatureBank(paths["bank"]) as bank:
        ex = bank.excluded
        reasons = dict(zip(ex["path"], ex["reason"]))
        assert set(reasons) == {info["dup"], info["by_id"]}
        assert "near-duplicate" in reasons[info["dup"]] and "id" in reasons[info["by_id"]]
        row = list(ex["path"]).index(info["dup"])
        assert ex["matched_stimulus"][row] == info["dup_of"] and ex["cosine"][row] > 0.99
        assert bank.attrs["exclude_threshold"] == pytest.approx(0.99)
        assert info["dup"] not in set(bank.paths) and info["id_excluded"] not in set(bank.image_ids)
        # everything else is there: 14 listed - 1 by id - 1 near-duplicate - 2 unreadable
        assert len(bank) == info["n_bank_listed"] - 4 == bank.attrs["n_images"]


def test_up_to_date_files_are_not_recomputed(oneshot):
    root, paths, _ = oneshot
    r = extract_source(root, BACKBONE, "bank", chunk_size=4, num_workers=0, progress=False)
    assert r.skipped and r.n_computed == 0 and r.path == paths["bank"] and r.n_failed == 2


_SLOW_CHILD = textwrap.dedent("""
    import sys, time, torch
    from sbd.features.backbones import get_backbone
    from sbd.features.extract import extract_source

    class Slow(torch.nn.Module):            # the real model, one batch every 0.4 s
        def __init__(self, m):
            super().__init__()
            self.m = m
        def forward(self, x):
            time.sleep(0.4)
            return self.m(x)

    bb = get_backbone("efficientnet-lite0", device="cpu")
    bb.model = Slow(bb.model)
    extract_source(sys.argv[1], bb, "bank", batch_size=2, num_workers=0, chunk_size=2,
                   progress=False)
""")


def test_killed_extraction_resumes_without_recomputing(oneshot, tmp_path):
    root, paths, info = oneshot
    data = _copy_without_bank_features(root, tmp_path / "data")
    partial = layout.features_file(data, BACKBONE, "bank").with_name("bank.partial")
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_CHILD, str(data)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(list(partial.glob("chunk-*.npz"))) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    done = len(list(partial.glob("chunk-*.npz")))
    assert 2 <= done < 6 and not layout.features_file(data, BACKBONE, "bank").exists()
    r = extract_source(data, BACKBONE, "bank", batch_size=2, num_workers=0, chunk_size=2,
                       progress=False)
    n_listed = info["n_bank_listed"] - 1
    assert r.n_resumed == 2 * done and r.n_computed + r.n_resumed == n_listed == r.n_images
    assert not partial.exists()
    _assert_same_bank(r.path, paths["bank"])


def test_shards_and_merge_equal_one_shot(oneshot, tmp_path):
    root, paths, _ = oneshot
    data = _copy_without_bank_features(root, tmp_path / "data")
    out = layout.features_file(data, BACKBONE, "bank")
    r0 = extract_source(data, BACKBONE, "bank", batch_size=2, num_workers=0, chunk_size=2,
                        shard="0/2", progress=False)
    assert r0.path is None and not out.exists() and r0.n_computed == 7
    with pytest.raises(RuntimeError, match="chunks missing"):
        merge(data, BACKBONE, "bank", chunk_size=2)
    r1 = extract_source(data, BACKBONE, "bank", batch_size=2, num_workers=2, chunk_size=2,
                        shard="1/2", progress=False)    # worker processes decode
    assert r1.path == out and r1.n_computed == 6 and r1.n_failed == 2
    _assert_same_bank(out, paths["bank"])


def test_one_process_merges_the_others_move_on(oneshot, tmp_path):
    """While another process holds the merge lock, the last shard does not merge (nor wait)
    and merge() refuses; the lock is the OS's, so a dead holder leaves none behind."""
    from filelock import FileLock

    root, paths, _ = oneshot
    data = _copy_without_bank_features(root, tmp_path / "data")
    out = layout.features_file(data, BACKBONE, "bank")
    lock_file = data / ".locks" / f"merge-features-{BACKBONE}-bank.lock"
    extract_source(data, BACKBONE, "bank", batch_size=2, num_workers=0, chunk_size=2,
                   shard="0/2", progress=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from filelock import FileLock
            lock = FileLock({str(lock_file)!r})
            lock.acquire()
            print("held", flush=True)
            time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r1 = extract_source(data, BACKBONE, "bank", batch_size=2, num_workers=0,
                            chunk_size=2, shard="1/2", progress=False)
        assert r1.path is None and not out.exists() and r1.n_computed == 6
        with pytest.raises(RuntimeError, match="Another process is merging"):
            merge(data, BACKBONE, "bank", chunk_size=2)
    finally:
        holder.kill()
        holder.wait(30)
        holder.stdout.close()
    assert merge(data, BACKBONE, "bank", chunk_size=2) == out    # the dead holder's lock is free
    assert FileLock(str(lock_file)).acquire(timeout=0)
    _assert_same_bank(out, paths["bank"])


def test_bad_arguments(tmp_path, oneshot):
    root, _, _ = oneshot
    with pytest.raises(ValueError, match="shard"):
        extract_dataset(root, BACKBONE, shard="2/2")
    with pytest.raises(ValueError, match="Unknown source"):
        extract_dataset(root, BACKBONE, source="images")
    with pytest.raises(ValueError, match="Unknown backbone"):
        extract_dataset(root, "alexnet", source="stimuli")
    with pytest.raises(FileNotFoundError, match="imagenet/train"):
        extract_dataset(tmp_path, BACKBONE, source="bank")


def test_step_logs_metrics_and_artifacts(oneshot):
    import mlflow

    from sbd.steps import extract_features

    root, _, _ = oneshot
    run_id = extract_features.run(dataset="phantom", data_dir=str(root), backbone=BACKBONE,
                                  source="all", num_workers=0, progress=False)
    run = mlflow.get_run(run_id)
    m = run.data.metrics
    assert (m["n_images"], m["n_failed"], m["n_excluded"]) == (5 + 2 + 13, 2, 2)
    assert "images_per_s" in m and m["bank/n_features"] == 10
    assert run.data.params["backbone"] == BACKBONE
    assert run.data.tags["sbd.features.bank"].endswith("bank.h5")
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "features")}
    assert {"features/bank.h5", "features/failed_bank.csv", "features/excluded_bank.csv",
            "features/summary.json"} <= arts
