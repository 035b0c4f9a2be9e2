"""WordNet 3.0 access: wnid ↔ synset, names, Wu-Palmer against NLTK's own values."""

from __future__ import annotations

import random

import pytest

from sbd import wordnet as wnm

DOG, CAT, DOMESTIC_CAT, OSTRICH = "n02084071", "n02121620", "n02121808", "n01518878"


@pytest.fixture(scope="module")
def wn():
    return wnm.get_wordnet()


def test_loads_wordnet_30_once(wn):
    assert wn.get_version() == "3.0"
    assert wnm.get_wordnet() is wn
    assert wn.synset_from_pos_and_offset("n", 2084071).name() == "dog.n.01"


def test_wnid_to_synset_and_back(wn):
    assert wnm.synset(DOG) is wn.synset("dog.n.01")
    assert wnm.synset(OSTRICH).name() == "ostrich.n.02"
    assert wnm.wnid_of(wnm.synset(OSTRICH)) == OSTRICH
    assert wnm.wnid_of("dog.n.01") == DOG
    assert wnm.name(OSTRICH) == "ostrich"
    assert wnm.name(DOG) == "dog"
    assert wnm.lemmas(DOG) == ["dog", "domestic dog", "Canis familiaris"]


def test_wup_known_values(wn):
    # NLTK 3.x: dog.n.01 vs cat.n.01
    assert wnm.wup(DOG, CAT) == 0.8571428571428571
    assert wnm.wup(DOG, CAT) == wn.synset("dog.n.01").wup_similarity(wn.synset("cat.n.01"))
    assert wnm.wup(DOG, DOMESTIC_CAT) == pytest.approx(0.8275862068965517, abs=0)
    # NLTK picks the subsumer by min depth: dog vs itself is not 1 (kept as NLTK has it)
    assert wnm.wup(DOG, DOG) == wn.synset("dog.n.01").wup_similarity(wn.synset("dog.n.01"))


def test_wup_equals_nltk_on_random_pairs(wn):
    names = ["chef.n.01", "fireman.n.01", "dog.n.01", "cat.n.01", "entity.n.01", "person.n.01",
             "ostrich.n.02", "car.n.01", "bicycle.n.01", "einstein.n.01", "paris.n.01",
             "apple.n.01", "piano.n.01", "tree.n.01", "teapot.n.01", "mushroom.n.02"]
    wnids = [wnm.wnid_of(n) for n in names]
    rng = random.Random(0)
    pairs = [(rng.choice(wnids), rng.choice(wnids)) for _ in range(150)]
    for a, b in pairs:
        assert wnm.wup(a, b) == wnm.synset(a).wup_similarity(wnm.synset(b)), (a, b)
    m = wnm.wup_matrix(wnids[:3], wnids)
    assert m.shape == (3, len(wnids))
    assert m[1, 4] == wnm.wup(wnids[1], wnids[4])


@pytest.mark.parametrize("bad", ["", "n0151887", "n015188780", "v01518878", "01518878",
                                 "N01518878", "n0151887x", None, 1518878])
def test_malformed_wnid(bad):
    assert not wnm.is_wnid(bad)
    with pytest.raises(ValueError, match="Malformed wnid"):
        wnm.synset(bad)


def test_unknown_wnid():
    assert wnm.is_wnid("n00000001")
    with pytest.raises(ValueError, match="n00000001"):
        wnm.synset("n00000001")
    with pytest.raises(ValueError, match="n99999999"):
        wnm.wup(DOG, "n99999999")
    with pytest.raises(ValueError, match="zzz.n.01"):
        wnm.wnid_of("zzz.n.01")
    with pytest.raises(ValueError, match="not a noun"):
        wnm.wnid_of("run.v.01")


def test_system_copy_layout(tmp_path):
    source, _ = wnm._find_system_dict()
    if source is None:
        pytest.skip("no system WordNet 3.0 (apt-get install wordnet-base wordnet-sense-index)")
    target = wnm._install_system_copy(source, tmp_path)
    assert target == tmp_path / "corpora" / "wordnet"
    assert wnm._cached_copy_ok(target)
    lines = (target / "lexnames").read_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3"
    assert lines[5] == "05\tnoun.animal\t1"
    assert lines[44] == "44\tadj.ppl\t3"
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temp left
    # a second install (e.g. a concurrent process) keeps a complete copy
    assert wnm._install_system_copy(source, tmp_path) == target
    assert wnm._cached_copy_ok(target)


def test_not_found_says_what_to_install(tmp_path, monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data")])
    monkeypatch.setenv("SBD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SBD_WORDNET_DOWNLOAD", "0")
    monkeypatch.setenv("WNSEARCHDIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(wnm, "_SYSTEM_DIRS", ())
    with pytest.raises(wnm.WordNetNotFoundError,
                       match="apt-get install wordnet-base wordnet-sense-index"):
        wnm._locate()
