"""Importing a precomputed bank (the paper's ``feature_imagenet_500_resnet50.pt`` +
``labels_imagenet_500_resnet50.pt`` form, and .npy / .npz / .h5): the result is searched
exactly as a bank written by BankWriter from the same arrays; a width that is not the
backbone's, labels that do not fit and the stimulus check are handled."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import mlflow
import numpy as np
import pytest
import torch

from sbd.data.label_sets import imagenet1k_wnids
from sbd.decoding.knn import exact_search
from sbd.features import bank_import
from sbd.features.bank import FeatureBank, write_bank

N, D = 80, 2048  # resnet50's width
PAPER_MAPPING = {i: {"id": w[1:] + "-n", "label": f"class {i}", "uri": f"http://x/{w}"}
                 for i, w in enumerate(imagenet1k_wnids())}


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(7)
    classes = rng.choice(1000, size=8, replace=False)
    labels = rng.choice(classes, size=N)
    centres = rng.gamma(2.0, 1.0, size=(1000, D)).astype(np.float32)
    feats = np.maximum(centres[labels] + rng.normal(0, 0.8, (N, D)), 0).astype(np.float32)
    queries = feats[rng.choice(N, 12)] + rng.normal(0, 0.5, (12, D)).astype(np.float32)
    return feats, labels.astype(np.int64), queries


@pytest.fixture(scope="module")
def reference(arrays, tmp_path_factory):
    """The same arrays written by BankWriter, as an extracted bank would be."""
    feats, labels, _ = arrays
    wnids = np.asarray(imagenet1k_wnids())[labels]
    path = tmp_path_factory.mktemp("ref") / "bank.h5"
    write_bank(path, feats, wnids, [f"r{i}" for i in range(N)], [""] * N,
               attrs={"backbone": "resnet50"})
    return path


def _same_search(imported, reference, queries, k=5):
    with FeatureBank(imported) as a, FeatureBank(reference) as b:
        assert a.backbone == b.backbone == "resnet50" and len(a) == len(b) == N
        np.testing.assert_array_equal(a.load(), b.load())
        np.testing.assert_array_equal(a.wnids, b.wnids)
        for metric in ("euclidean", "cosine"):
            got, want = (exact_search(queries, bank, k=k, metric=metric) for bank in (a, b))
            np.testing.assert_array_equal(got.indices, want.indices)
            np.testing.assert_array_equal(got.wnids, want.wnids)
            np.testing.assert_allclose(got.distances, want.distances, rtol=1e-6)


def test_paper_pt_pair_is_searched_like_an_extracted_bank(arrays, reference, tmp_path):
    feats, labels, queries = arrays
    torch.save(torch.from_numpy(feats), tmp_path / "feature_imagenet_500_resnet50.pt")
    torch.save(torch.from_numpy(labels), tmp_path / "labels_imagenet_500_resnet50.pt")
    (tmp_path / "class_to_wordnet.json").write_text(repr(PAPER_MAPPING))  # a Python literal
    with pytest.warns(UserWarning, match="stimulus exclusion not checkable by image id"):
        out = bank_import.import_bank(tmp_path / "feature_imagenet_500_resnet50.pt",
                                      tmp_path / "labels_imagenet_500_resnet50.pt", "resnet50",
                                      tmp_path / "features" / "resnet50" / "bank.h5",
                                      mapping=tmp_path / "class_to_wordnet.json")
    _same_search(out, reference, queries)
    with FeatureBank(out) as bank:
        attrs = bank.attrs
        assert not attrs["exclusion_checked"]
        assert attrs["exclusion"].startswith("not checkable")
        assert attrs["layer"].startswith("avgpool") and attrs["dim"] == D
        assert attrs["n_images"] == N and attrs["n_excluded"] == 0 and attrs["source"] == "bank"
        assert bank.image_ids[3] == "feature_imagenet_500_resnet50.pt#3"
        assert bank.dtype == np.float16


def test_npy_with_wnid_labels_and_the_builtin_order(arrays, reference, tmp_path):
    feats, labels, queries = arrays
    np.save(tmp_path / "f.npy", feats)
    np.save(tmp_path / "wnids.npy", np.asarray(imagenet1k_wnids())[labels])
    np.save(tmp_path / "idx.npy", labels)
    with pytest.warns(UserWarning):
        by_wnid = bank_import.import_bank(tmp_path / "f.npy", tmp_path / "wnids.npy",
                                          "resnet50", tmp_path / "a.h5")
        by_index = bank_import.import_bank(tmp_path / "f.npy", tmp_path / "idx.npy", "resnet50",
                                           tmp_path / "b.h5", block_rows=7)
    _same_search(by_wnid, reference, queries)
    _same_search(by_index, reference, queries)


def test_h5_and_npz(arrays, reference, tmp_path):
    feats, labels, queries = arrays
    wnids = np.asarray(imagenet1k_wnids())[labels]
    with h5py.File(tmp_path / "bank_src.h5", "w") as f:
        f["features"] = feats
        f.create_dataset("labels", data=wnids.astype(object), dtype=h5py.string_dtype())
    np.savez(tmp_path / "src.npz", features=feats, labels=labels)
    with pytest.warns(UserWarning):
        h5 = bank_import.import_bank(tmp_path / "bank_src.h5", tmp_path / "bank_src.h5",
                                     "resnet50", tmp_path / "h5.h5")
        npz = bank_import.import_bank(tmp_path / "src.npz", tmp_path / "src.npz", "resnet50",
                                      tmp_path / "npz.h5", features_key="features",
                                      labels_key="labels")
    _same_search(h5, reference, queries)
    _same_search(npz, reference, queries)


def test_wrong_width_and_labels_refused(arrays, tmp_path):
    feats, labels, _ = arrays
    torch.save(torch.from_numpy(feats[:, :1280].copy()), tmp_path / "f.pt")
    torch.save(torch.from_numpy(labels), tmp_path / "l.pt")
    with pytest.raises(ValueError, match=r"f\.pt: features are 1280-d, but backbone 'resnet50' "
                                         r"gives 2048-d .*backbones of 1280-d: .*efficientnet-lite0"):
        bank_import.import_bank(tmp_path / "f.pt", tmp_path / "l.pt", "resnet50",
                                tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()
    with pytest.raises(ValueError, match=r"Unknown backbone='resnet-50'"):
        bank_import.import_bank(tmp_path / "f.pt", tmp_path / "l.pt", "resnet-50",
                                tmp_path / "x.h5")
    torch.save(torch.from_numpy(feats), tmp_path / "f.pt")
    torch.save(torch.from_numpy(labels[:-1]), tmp_path / "short.pt")
    with pytest.raises(ValueError, match=r"short\.pt holds 79 labels but .*f\.pt 80 feature rows"):
        bank_import.import_bank(tmp_path / "f.pt", tmp_path / "short.pt", "resnet50",
                                tmp_path / "x.h5")
    torch.save(torch.from_numpy(labels + 1000), tmp_path / "big.pt")
    with pytest.raises(ValueError, match=r"class index\(es\) not in the ILSVRC-2012 class order"):
        bank_import.import_bank(tmp_path / "f.pt", tmp_path / "big.pt", "resnet50",
                                tmp_path / "x.h5")
    np.save(tmp_path / "names.npy", np.array(["tench"] * N))
    with pytest.raises(ValueError, match=r"names\.npy: 80 label\(s\) are not wnids"):
        bank_import.import_bank(tmp_path / "f.pt", tmp_path / "names.npy", "resnet50",
                                tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def test_mapping_forms(tmp_path):
    (tmp_path / "keras.json").write_text('{"0": ["n01440764", "tench"], "1": ["n01443537", "gf"]}')
    (tmp_path / "lines.txt").write_text("n01440764 tench\nn01443537 goldfish\n")
    (tmp_path / "paper.json").write_text("{0: {'id': '01440764-n'}, 1: {'id': '01443537-n'}}")
    want = {0: "n01440764", 1: "n01443537"}
    for name in ("keras.json", "lines.txt", "paper.json"):
        assert bank_import.read_mapping(tmp_path / name) == want
    (tmp_path / "bad.json").write_text("{0: {'id': 'tench'}}")
    with pytest.raises(ValueError, match=r"bad\.json: class 0: 'tench' is not a wnid"):
        bank_import.read_mapping(tmp_path / "bad.json")


def test_stimuli_kept_out(arrays, tmp_path):
    feats, labels, _ = arrays
    stim = tmp_path / "test.h5"
    write_bank(stim, feats[[4, 9]], ["n00000001", "n00000002"], ["s_4", "s_9"], ["", ""],
               attrs={"backbone": "resnet50"}, dtype="float32")
    torch.save(torch.from_numpy(feats), tmp_path / "f.pt")
    torch.save(torch.from_numpy(labels), tmp_path / "l.pt")
    with pytest.warns(UserWarning, match="not checkable by image id"):
        out = bank_import.import_bank(tmp_path / "f.pt", tmp_path / "l.pt", "resnet50",
                                      tmp_path / "bank.h5", stimuli=[stim])
    with FeatureBank(out) as bank:
        assert len(bank) == N - 2 and bank.attrs["exclusion_checked"]
        assert "near-duplicates of the stimuli" in bank.attrs["exclusion"]
        ex = bank.excluded
        assert sorted(ex["matched_stimulus"].tolist()) == ["s_4", "s_9"]
        assert sorted(ex["image_id"].tolist()) == ["f.pt#4", "f.pt#9"]
    # with image ids the id check runs too, and nothing is left unchecked: no warning
    np.save(tmp_path / "ids.npy", np.array([f"s_{i}" if i == 30 else f"x_{i}" for i in range(N)]))
    other = np.random.default_rng(1).normal(size=(1, D))  # not like any bank row
    write_bank(tmp_path / "train.h5", other, ["n00000003"], ["s_30"], [""],
               attrs={"backbone": "resnet50"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = bank_import.import_bank(tmp_path / "f.pt", tmp_path / "l.pt", "resnet50",
                                      tmp_path / "bank2.h5", image_ids=tmp_path / "ids.npy",
                                      stimuli=[stim, tmp_path / "train.h5"])
    assert not [w for w in caught if "stimulus exclusion" in str(w.message)]
    with FeatureBank(out) as bank:
        reasons = dict(zip(bank.excluded["image_id"].tolist(), bank.excluded["reason"].tolist()))
        assert reasons["s_30"] == "stimulus image id"
        assert reasons["x_4"].startswith("near-duplicate") and len(bank) == N - 3
        assert bank.attrs["exclusion"].startswith("checked: stimulus image ids and near-dup")
    write_bank(tmp_path / "lite.h5", np.ones((1, 1280)), ["n00000001"], ["s"], [""],
               attrs={"backbone": "efficientnet-lite0"})
    with pytest.raises(ValueError, match=r"lite\.h5 holds 'efficientnet-lite0' features, not "
                                         r"'resnet50'"):
        bank_import.import_bank(tmp_path / "f.pt", tmp_path / "l.pt", "resnet50",
                                tmp_path / "bank3.h5", stimuli=[tmp_path / "lite.h5"])


def test_cli(arrays, reference, tmp_path, capsys):
    feats, labels, queries = arrays
    torch.save(torch.from_numpy(feats), tmp_path / "f.pt")
    torch.save(torch.from_numpy(labels), tmp_path / "l.pt")
    (tmp_path / "map.json").write_text(repr(PAPER_MAPPING))
    with pytest.warns(UserWarning):
        bank_import.main([str(tmp_path / "f.pt"), str(tmp_path / "l.pt"), "--backbone",
                          "resnet50", "--out", str(tmp_path / "bank.h5"), "--mapping",
                          str(tmp_path / "map.json")])
    out = capsys.readouterr().out
    assert "80 rows, 8 classes, 2048-d resnet50" in out and "not checkable" in out
    _same_search(tmp_path / "bank.h5", reference, queries)


def test_main_decodes_with_the_papers_bank_format_and_resnet50(phantom_dir, tmp_path,
                                                              monkeypatch, store_of_its_own):
    """The paper's setting without an ImageNet extraction: ResNet-50 (random weights put
    where torchvision's loader finds them: no download) and its bank imported from the
    paper's .pt pair. ``main`` keeps the imported bank (no bank extraction), decodes with
    it, and says why the nearest-bank-image baseline is skipped."""
    import hashlib
    import shutil

    import torch
    from torchvision.models import ResNet50_Weights, resnet50

    from sbd.data.layout import features_file
    from sbd.features.extract import extract_dataset
    from sbd.steps import main
    from sbd import tracking

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / Path(ResNet50_Weights.IMAGENET1K_V1.url).name
    ckpt.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(resnet50().state_dict(), ckpt)
    data = tmp_path / "data"
    shutil.copytree(phantom_dir, data, ignore=shutil.ignore_patterns("features", ".locks"))
    # the paper's files, made from an extracted bank: features .pt, class indices .pt and
    # class_to_wordnet.json (a Python-literal dict)
    # (random weights map every image near every other: no near-duplicate exclusion here)
    extract_dataset(data, backbone="resnet50", source="bank", num_workers=0, progress=False,
                    exclude_threshold=1.01)
    bank_path = features_file(data, "resnet50", "bank")
    with FeatureBank(bank_path) as b:
        feats, wnids = b.load().astype(np.float32), b.wnids.astype(str)
    assert len(wnids) > 50
    classes = sorted(set(map(str, wnids)))
    torch.save(torch.from_numpy(feats), tmp_path / "feature_imagenet_500_resnet50.pt")
    torch.save(torch.tensor([classes.index(w) for w in wnids]),
               tmp_path / "labels_imagenet_500_resnet50.pt")
    (tmp_path / "class_to_wordnet.json").write_text(repr(
        {i: {"id": w[1:] + "-n", "label": w} for i, w in enumerate(classes)}))
    bank_path.unlink()
    bank_import.import_bank(tmp_path / "feature_imagenet_500_resnet50.pt",
                            tmp_path / "labels_imagenet_500_resnet50.pt", "resnet50", bank_path,
                            mapping=tmp_path / "class_to_wordnet.json")
    with FeatureBank(bank_path) as b:  # the same rows as extracted: searched the same
        np.testing.assert_array_equal(b.load().astype(np.float32), feats)
        np.testing.assert_array_equal(b.wnids.astype(str), wnids)
    before = hashlib.sha256(bank_path.read_bytes()).hexdigest()
    with store_of_its_own(tmp_path / "store", "imported-bank"):
        parent = main.run(dataset="phantom", data_dir=str(data), preset="small",
                          backbone="resnet50", subjects="1", rois="VC", n_trials=2, seed=0)
        children = {r.data.tags["sbd.entry_point"]: r for r in mlflow.search_runs(
            filter_string=f"tags.`mlflow.parentRunId` = '{parent}'", output_format="list",
            search_all_experiments=True)}
    assert hashlib.sha256(bank_path.read_bytes()).hexdigest() == before  # kept, not re-extracted
    assert "feature_imagenet_500_resnet50.pt" in \
        children["extract_features"].data.tags["sbd.features.bank_imported"]
    ev = children["evaluate"]
    assert ev.data.tags["sbd.backbone"] == "resnet50"
    assert "imported" in ev.data.tags[tracking.FIELD_BASELINE_SKIPPED_TAG]
    assert 0.0 < ev.data.metrics["test/wup_top1"] <= 1.0
    assert not any(k.startswith("baseline/nearest_bank/") for k in ev.data.metrics)
