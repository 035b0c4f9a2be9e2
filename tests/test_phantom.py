"""The phantom dataset: emoji concepts, GOD format read back by the GOD reader, manifest and
determinism, and decodability (ridge + nearest bank neighbour) at high and zero SNR."""

from __future__ import annotations

import shutil
import unicodedata

import numpy as np
import pytest
from PIL import Image

from sbd.data import emoji, god, layout, phantom
from sbd import wordnet as wnm

SMALL = phantom.PRESETS["small"]


@pytest.fixture(scope="module")
def cats():
    return emoji.categories()


def _copy(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".phantom-stage-*"))
    return dst


# ------------------------------------------------------------------ emoji → WordNet


def test_emoji_categories_are_physical_wordnet_nouns(cats):
    default = phantom.PRESETS["default"]
    assert len(cats) >= default.n_train_categories + default.n_test_categories >= 200
    assert len({c.wnid for c in cats}) == len(cats)
    wn = wnm.get_wordnet()
    for c in cats:
        syn = wnm.synset(c.wnid)  # a valid WordNet 3.0 noun offset
        assert syn is wn.synset(c.synset)
        assert emoji.is_physical(syn), c
        assert c.chars and set(c.outline_chars) <= set(c.chars)
    names = {c.synset for c in cats}
    assert {"dog.n.01", "apple.n.01", "umbrella.n.01", "bicycle.n.01"} <= names
    # the curated table wins over the name: TURTLE is the reptile, not the sweater
    turtle = next(c for c in cats if "\N{TURTLE}" in c.chars)
    assert turtle.synset == "turtle.n.02"
    # dropped: people, body parts, zodiac
    drawn = "".join("".join(c.chars) for c in cats)
    for ch in ("\N{MAN}", "\N{EYE}", "\N{ARIES}"):
        assert ch not in drawn


def test_every_override_is_valid():
    wn = wnm.get_wordnet()
    for cp, name in emoji.OVERRIDES.items():
        assert unicodedata.name(chr(cp), None), hex(cp)
        if name is not None:
            assert emoji.is_physical(wn.synset(name)), (hex(cp), name)


def test_render_and_compose_are_deterministic(cats):
    fonts = emoji.find_fonts()
    cat = next(c for c in cats if c.outline_chars)
    glyph = emoji.render_glyph(cat.chars[0], fonts, "color")
    assert glyph.mode == "RGBA" and glyph.getchannel("A").getbbox() is not None
    out = [emoji.compose(glyph, np.random.default_rng(7), 96) for _ in range(2)]
    assert out[0].size == (96, 96) and out[0].mode == "RGB"
    assert np.array_equal(np.asarray(out[0]), np.asarray(out[1]))
    other = emoji.compose(glyph, np.random.default_rng(8), 96)
    assert not np.array_equal(np.asarray(out[0]), np.asarray(other))
    line = emoji.render_glyph(cat.outline_chars[0], fonts, "outline", np.random.default_rng(0))
    assert line.mode == "RGBA" and line.getchannel("A").getbbox() is not None
    with pytest.raises(ValueError, match="Unknown style"):
        emoji.render_glyph(cat.chars[0], fonts, "sketch")


# ------------------------------------------------------------------ GOD format


def test_phantom_reads_back_through_the_god_reader(phantom_dir):
    report = god.validate(phantom_dir)
    assert report["ok"], report["problems"]
    manifest = phantom.read_manifest(phantom_dir)
    assert set(report["subjects"]) == {str(s) for s in range(1, SMALL.n_subjects + 1)}
    wn_checked = set()
    for s in range(1, SMALL.n_subjects + 1):
        sub = report["subjects"][str(s)]
        assert set(sub["rois"]) == set(god.ROIS)
        assert sub["rois"]["VC"] == sum(sub["rois"][r] for r in phantom.ROIS)
        assert sub["rois"]["LVC"] == sub["rois"]["V1"] + sub["rois"]["V2"] + sub["rois"]["V3"]
        n_test = SMALL.n_test_categories
        assert sub["samples"] == {
            "train": SMALL.n_train_categories * SMALL.n_train_per_category,
            "test": n_test * SMALL.test_repeats, "imagery": n_test * SMALL.imagery_repeats}

        train = god.load(phantom_dir, s, "VC", "train")
        test = god.load(phantom_dir, s, "VC", "test")
        imagery = god.load(phantom_dir, s, "HVC", "imagery")
        raw_test = god.load(phantom_dir, s, "VC", "test", average=False)
        # disjoint categories; repetitions averaged, one row per test image, sorted
        assert not set(train.wnids) & set(test.wnids)
        assert len(set(train.wnids)) == SMALL.n_train_categories
        assert len(raw_test) == n_test * SMALL.test_repeats
        assert len(test) == n_test and test.image_ids == sorted(set(raw_test.image_ids))
        assert imagery.image_ids == sorted(test.wnids)
        assert train.voxels.dtype == np.float32 and np.isfinite(train.voxels).all()
        assert train.wnids == manifest["categories"]["train"] or \
            set(train.wnids) == set(manifest["categories"]["train"])
        for w in set(train.wnids) | set(test.wnids) - wn_checked:
            assert wnm.synset(w).pos() == "n"
            wn_checked.add(w)
        for i in train.image_ids + test.image_ids:  # ILSVRC-like ids
            wnid, num = i.split("_")
            assert wnid[0] == "n" and len(wnid) == 9 and num.isdigit()
        paths, missing = god.stimulus_paths(phantom_dir, test.image_ids, "test")
        assert not missing and all(p.suffix == ".JPEG" for p in paths)

    # the bank: ILSVRC layout, images distinct from every stimulus; every training
    # category, and as in GOD's ILSVRC-1k bank (20 of 50) 40 % of the test categories, the
    # others absent
    bank = layout.bank_dir(phantom_dir)
    bank_ids = {p.stem for p in bank.glob("*/*.JPEG")}
    stim_ids = {p.stem for s in layout.STIMULUS_SETS
                for p in layout.images_dir(phantom_dir, s).glob("*.JPEG")}
    assert not bank_ids & stim_ids
    bank_wnids = {p.name for p in bank.iterdir()}
    test_wnids = set(manifest["categories"]["test"])
    assert set(manifest["categories"]["train"]) <= bank_wnids
    assert test_wnids & bank_wnids == set(manifest["categories"]["test_in_bank"])
    assert len(test_wnids & bank_wnids) == round(0.4 * SMALL.n_test_categories) == 4
    assert len(bank_ids) == len(bank_wnids) * SMALL.bank_per_category
    assert all(i.split("_")[0] == p for p in bank_wnids for i in
               (q.stem for q in (bank / p).glob("*.JPEG")))


def test_manifest_noop_rebuild_and_determinism(phantom_dir, tmp_path):
    root = _copy(phantom_dir, tmp_path / "p")
    before = phantom.read_manifest(root)
    h5 = layout.fmri_file(root, 1)
    mtime = h5.stat().st_mtime_ns
    again = phantom.build(root, preset="small", seed=0, progress=False)
    assert again == before and h5.stat().st_mtime_ns == mtime  # a no-op

    x0 = god.load(root, 1, "VC", "train", zscore=False).voxels
    changed = phantom.build(root, preset="small", seed=0, snr=5.0, progress=False)
    assert changed["images_reused"] and changed["params"]["snr"] == 5.0
    assert changed["fmri_key"] != before["fmri_key"]
    assert changed["outputs"]["imagenet/train"] == before["outputs"]["imagenet/train"]
    assert not np.allclose(god.load(root, 1, "VC", "train", zscore=False).voxels, x0)
    back = phantom.build(root, preset="small", seed=0, progress=False)
    assert np.array_equal(god.load(root, 1, "VC", "train", zscore=False).voxels, x0)
    assert back["fmri_key"] == before["fmri_key"]

    # images: re-rendering any planned image gives the file on disk
    plan = phantom._plan(SMALL, 0, emoji.categories())
    fonts = emoji.find_fonts()
    for im, folder in ((plan.train[3], layout.images_dir(root, "training")),
                       (plan.bank[5], layout.bank_dir(root) / plan.bank[5].wnid)):
        disk = np.asarray(Image.open(folder / f"{im.image_id}.JPEG"))
        fresh = phantom._render(im, fonts, SMALL.image_size)
        fresh.save(tmp_path / "x.JPEG", "JPEG", quality=SMALL.jpeg_quality)
        assert np.array_equal(disk, np.asarray(Image.open(tmp_path / "x.JPEG")))

    # a damaged output is rebuilt (here: voxels only); another dataset is never overwritten
    h5.write_bytes(h5.read_bytes()[:1000])
    redone = phantom.build(root, preset="small", seed=0, progress=False)
    assert redone["images_reused"] and redone["created"] >= before["created"]
    assert np.array_equal(god.load(root, 1, "VC", "train", zscore=False).voxels, x0)
    other = tmp_path / "god"
    layout.fmri_file(other, 1).parent.mkdir(parents=True)
    layout.fmri_file(other, 1).write_bytes(b"not a phantom")
    with pytest.raises(FileExistsError, match="not a phantom"):
        phantom.build(other, preset="small", progress=False)


def test_the_full_bank_differs_only_in_the_bank(phantom_dir, tmp_path):
    """bank_test_fraction decides which test categories the bank holds, nothing else: the
    stimuli and the other bank images are those of the full bank; the absent test
    categories keep WordNet neighbours in the bank (a bank label closer to each than the
    label set's average)."""
    full = phantom._plan(phantom.resolve_config("small", bank_test_fraction=1.0), 0,
                         emoji.categories())
    part = phantom._plan(SMALL, 0, emoji.categories())
    assert [im.image_id for im in full.train + full.test] == \
        [im.image_id for im in part.train + part.test]
    absent = set(part.test_wnids) - set(part.bank_wnids)
    assert len(absent) == 6 and set(full.test_wnids) <= set(full.bank_wnids)
    assert {im.image_id for im in part.bank} == {im.image_id for im in full.bank
                                                 if im.wnid not in absent}
    manifest = phantom.read_manifest(phantom_dir)
    assert sorted(set(part.test_wnids) - absent) == manifest["categories"]["test_in_bank"]
    for w in absent:
        sims = [wnm.wup(w, b) for b in part.bank_wnids]
        assert max(sims) > np.mean(sims) + 0.2, w
    assert phantom.PRESETS["full-bank"].bank_test_fraction == 1.0
    with pytest.raises(ValueError, match=r"bank_test_fraction must be in \[0, 1\]"):
        phantom.resolve_config("small", bank_test_fraction=1.5)


def test_bad_parameters():
    with pytest.raises(ValueError, match="Unknown preset='huge'"):
        phantom.resolve_config("huge")
    with pytest.raises(ValueError, match="Unknown phantom parameter"):
        phantom.resolve_config("small", colour=3)
    with pytest.raises(ValueError, match="needs 900 categories"):
        phantom._plan(phantom.resolve_config("small", n_train_categories=890), 0,
                      emoji.categories())
    assert phantom.resolve_config("small", snr=-1, n_subjects=0) == SMALL


# ------------------------------------------------------------------ decodability


def _decode(root, bank, snr):
    """Ridge (voxels → CNN features) + nearest bank neighbour, VC, subjects 1 and 2 pooled.

    Named among the held-out bank categories (test + extra ones: never trained on) and among
    the whole bank (the GOD way; in the small preset predictions lean to training categories).
    """
    from sklearn.linear_model import RidgeCV

    from sbd.features.bank import FeatureBank

    phantom.build(root, preset="small", seed=0, snr=snr, progress=False)
    feats, wnids = bank
    with FeatureBank(layout.features_file(root, "efficientnet-lite0", "training")) as fb:
        decided = {"held_out": [], "all": []}
        for subject in (1, 2):
            train = god.load(root, subject, "VC", "train")
            test = god.load(root, subject, "VC", "test")
            y = fb.lookup(train.image_ids)
            ridge = RidgeCV(alphas=np.logspace(0, 5, 11)).fit(train.voxels, y)
            mu = y.mean(axis=0)
            pred = ridge.predict(test.voxels) - mu
            pred /= np.linalg.norm(pred, axis=1, keepdims=True)
            held_out = ~np.isin(wnids, train.wnids)
            for key, cand in (("held_out", held_out), ("all", np.ones_like(held_out))):
                f = feats[cand] - mu
                sim = pred @ (f / np.linalg.norm(f, axis=1, keepdims=True)).T
                decided[key] += list(zip(wnids[cand][sim.argmax(axis=1)], test.wnids))
    held_cats = sorted(set(wnids[held_out]))
    truth = [t for _, t in decided["all"]]
    return {  # exact hits: over the test samples whose category the bank holds
        "acc_held_out": float(np.mean([d == t for d, t in decided["held_out"]
                                       if t in held_cats])),
        "chance_held_out": 1 / len(held_cats),
        "wup_held_out": float(np.mean([wnm.wup(d, t) for d, t in decided["held_out"]])),
        "wup_chance_held_out": float(np.mean([wnm.wup(c, t) for t in truth for c in held_cats])),
        "wup_top1": float(np.mean([wnm.wup(d, t) for d, t in decided["all"]])),
        "wup_chance": float(np.mean([wnm.wup(c, t) for t in truth for c in sorted(set(wnids))])),
    }


def test_phantom_is_decodable_and_not_trivial(phantom_features, tmp_path):
    from sbd.features.bank import FeatureBank

    root = _copy(phantom_features, tmp_path / "p")
    with FeatureBank(layout.features_file(root, "efficientnet-lite0", "bank")) as fb:
        bank = (fb.load(), np.asarray(fb.wnids))
    high = _decode(root, bank, snr=30.0)
    zero = _decode(root, bank, snr=0.0)
    print("\nphantom decodability (small preset):", {"snr=30": high, "snr=0": zero})
    # 8 decisions (the 4 test categories in the bank, 2 subjects) among 14 held-out
    # categories: >= 3 right has p ≈ 0.02 by chance
    assert high["acc_held_out"] >= 4 * high["chance_held_out"] - 1e-9
    assert high["wup_held_out"] > high["wup_chance_held_out"] + 0.03
    assert zero["acc_held_out"] <= 3 * zero["chance_held_out"] + 1e-9
    assert abs(zero["wup_held_out"] - zero["wup_chance_held_out"]) < 0.1
