"""kNN search and label rules, checked against sklearn and hand-made cases; the kNN pyfunc."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

from sbd.decoding import knn
from sbd.decoding.knn import (METRICS, RULES, FaissIndex, InMemoryBank, KNNLabeller,
                              Neighbours, exact_search, rank_labels, recall_at_k)
from sbd.features import bank as bank_module
from sbd.features.bank import FeatureBank, write_bank
from sbd.registry.signatures import InvalidModelInput

WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331",
         "n01498041", "n01514668", "n01514859", "n01518878", "n01530575", "n01531178"]


def make_bank(path, n=900, dim=32, n_classes=12, seed=0, spread=1.0, storage="contiguous"):
    """A clustered bank file: rows = class centre + noise, float16 storage."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 3
    labels = rng.integers(0, n_classes, n)
    X = (centres[labels] + spread * rng.normal(size=(n, dim))).astype(np.float32)
    wnids = [WNIDS[c] for c in labels]
    write_bank(path, X, wnids, [f"{w}_{i}" for i, w in enumerate(wnids)], [""] * n,
               attrs={"backbone": "synthetic"}, storage=storage)
    return path, X.astype(np.float16).astype(np.float32), np.array(wnids), centres


@pytest.fixture(scope="module")
def bank_file(tmp_path_factory):
    return make_bank(tmp_path_factory.mktemp("bank") / "bank.h5")


@pytest.fixture(params=[True, False], ids=["float16-products", "float32-blocks"])
def search_path(request):
    """Both search paths: float16 products over the stored rows (AVX-512 CPUs by default;
    neighbours reranked exactly, class distances at float16 precision) and float32 blocks;
    returns ``(half, class-distance tolerance of the path)``."""
    return request.param, 1e-3 if request.param else 1e-4


@pytest.fixture(scope="module")
def queries():
    return np.random.default_rng(7).normal(size=(23, 32)).astype(np.float32) * 3


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("block_size", [100, 4096])
def test_exact_search_matches_sklearn_brute(bank_file, queries, metric, block_size,
                                            search_path):
    path, X, wnids, _ = bank_file
    nb = exact_search(queries, path, k=7, metric=metric, block_size=block_size,
                      half=search_path[0])
    d, i = NearestNeighbors(n_neighbors=7, algorithm="brute", metric=metric).fit(X).kneighbors(
        queries)
    np.testing.assert_array_equal(nb.indices, i)
    np.testing.assert_allclose(nb.distances, d, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(nb.wnids, wnids[i])


@pytest.mark.parametrize("metric", METRICS)
def test_class_distances_and_exclusion(bank_file, queries, metric, search_path):
    half, class_rtol = search_path
    path, X, wnids, _ = bank_file
    classes, codes = knn.class_codes(wnids)
    exclude = np.zeros(len(X), bool)
    exclude[::3] = True
    nb = exact_search(queries, path, k=4, metric=metric, block_size=128, codes=codes,
                      exclude=exclude, half=half)
    D = pairwise_distances(queries, X, metric=metric)
    D[:, exclude] = np.inf
    np.testing.assert_array_equal(nb.indices, np.argsort(D, axis=1, kind="stable")[:, :4])
    want = np.stack([D[:, codes == c].min(1) for c in range(len(classes))], 1)
    np.testing.assert_allclose(nb.class_distances, want, rtol=class_rtol, atol=1e-4)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("members", [2, 3])
def test_class_distances_average_the_nearest_members(bank_file, queries, metric, members,
                                                     search_path):
    """members m: each class's distance is the mean of its m nearest rows, across blocks,
    with duplicate rows counted as separate members, and a class with fewer rows left
    averaging those it has (inf when none)."""
    half, class_rtol = search_path
    path, X, wnids, _ = bank_file
    X = np.concatenate([X, X[:40]])  # 40 exact duplicates: ties inside and across blocks
    wnids = np.concatenate([wnids, wnids[:40]])
    classes, codes = knn.class_codes(wnids)
    exclude = np.zeros(len(X), bool)
    exclude[codes == 0] = True  # a class with no row left
    exclude[np.flatnonzero(codes == 1)[members - 1:]] = True  # fewer rows than members
    nb = exact_search(queries, InMemoryBank(X, wnids), k=4, metric=metric, block_size=77,
                      codes=codes, exclude=exclude, class_members=members, half=half)
    D = pairwise_distances(queries, X, metric=metric)
    D[:, exclude] = np.inf
    want = np.full((len(queries), len(classes)), np.inf)
    for c in range(1, len(classes)):
        d = np.sort(D[:, codes == c], axis=1)[:, :members]
        want[:, c] = np.nanmean(np.where(np.isfinite(d), d, np.nan), axis=1)
    np.testing.assert_allclose(nb.class_distances, want, rtol=class_rtol, atol=1e-4)
    # the same through the labeller, and FAISS-style class distances from a long
    # retrieved list (every row retrieved) agree with the exact ones
    order = np.argsort(D, axis=1, kind="stable")
    got = knn.retrieved_class_distances(np.take_along_axis(D, order, 1).astype(np.float32),
                                        np.where(np.isfinite(np.take_along_axis(D, order, 1)),
                                                 order, -1), codes, len(classes), members)
    np.testing.assert_allclose(got[:, 2:], want[:, 2:], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="class_members must be >= 1"):
        exact_search(queries, path, codes=knn.class_codes(bank_file[2])[1], class_members=0)


def test_retrieved_class_distances_bound_missing_members():
    """A member an approximate search did not retrieve counts at the farthest retrieved
    distance; a class with none retrieved stays inf."""
    dist = np.array([[0.1, 0.2, 0.4, 0.9]], np.float32)
    idx = np.array([[5, 6, 2, -1]])  # the last one: nothing retrieved
    codes = np.array([0, 0, 1, 0, 0, 1, 2, 1])  # rows 5, 2 -> class 1; row 6 -> class 2
    two = knn.retrieved_class_distances(dist, idx, codes, 4, members=2)
    np.testing.assert_allclose(two, [[np.inf, (0.1 + 0.4) / 2, (0.2 + 0.4) / 2, np.inf]],
                               rtol=1e-6)
    one = knn.retrieved_class_distances(dist, idx, codes, 4, members=1)
    np.testing.assert_allclose(one, [[np.inf, 0.1, 0.2, np.inf]], rtol=1e-6)


def test_parallel_block_reader_equals_featurebank(tmp_path):
    """Banks of earlier sbd (chunked, gzip) are read by parallel chunk decompression."""
    path = make_bank(tmp_path / "gzip.h5", storage="gzip")[0]
    with FeatureBank(path) as bank:
        layout = bank_module._fast_layout(bank)
        assert layout is not None, "gzip bank files take the parallel chunk reader"
        layout[0].close()
        ours = [(s, b.copy()) for s, b in knn.iter_blocks(bank, 256, workers=3)]
        ref = list(bank.iter_blocks(256))
    assert [s for s, _ in ours] == [s for s, _ in ref]
    for (_, a), (_, b) in zip(ours, ref):
        np.testing.assert_array_equal(a, b)


def _toy_neighbours():
    """Hand-made: one query, 5 neighbours with labels a a b c b."""
    classes = np.array(["a", "b", "c", "d"])
    nb = Neighbours(indices=np.arange(5)[None], distances=np.array([[1.0, 1.1, 1.2, 3.0, 3.1]]),
                    wnids=np.array([["a", "a", "b", "c", "b"]]),
                    class_distances=np.array([[1.0, 1.2, 3.0, 9.0]], np.float32),
                    metric="euclidean")
    return nb, classes


def test_label_rules_on_a_hand_made_case():
    nb, classes = _toy_neighbours()
    cen = np.array([[4.0, 2.0, 3.0, 1.0]], np.float32)
    w, s = rank_labels(nb, classes, "nearest", k=5, top_k=4, centroid_dist=cen)
    assert w[0].tolist() == ["a", "b", "c", "d"] and s[0, 0] == pytest.approx(-1.0)
    w, s = rank_labels(nb, classes, "vote", k=5, top_k=4, centroid_dist=cen)
    # a and b have 2 votes each, a's nearest member is closer; d (no vote) filled last
    assert w[0].tolist() == ["a", "b", "c", "d"]
    np.testing.assert_allclose(s[0], [0.4, 0.4, 0.2, 0.0])
    w, _ = rank_labels(nb, classes, "vote", k=3, top_k=2, centroid_dist=cen)
    assert w[0].tolist() == ["a", "b"]
    w, s = rank_labels(nb, classes, "weighted", k=5, temperature=1e-3, top_k=3,
                       centroid_dist=cen)
    assert w[0, 0] == "a" and s[0, 0] == pytest.approx(1.0, abs=1e-6)
    w, s = rank_labels(nb, classes, "weighted", k=5, temperature=1e6, top_k=3,
                       centroid_dist=cen)
    np.testing.assert_allclose(s[0], [0.4, 0.4, 0.2], atol=1e-5)  # → plain vote
    w, s = rank_labels(nb, classes, "centroid", top_k=4, centroid_dist=cen)
    assert w[0].tolist() == ["d", "b", "c", "a"] and s[0, 0] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="Unknown rule='best'"):
        rank_labels(nb, classes, "best")


def test_semantic_rule_picks_the_label_of_highest_expected_similarity():
    """Evidence split between two sibling classes: rank 1 is their common parent (never the
    nearest), ranks 2.. the most probable classes; a confident posterior keeps the nearest."""
    classes = np.array(["dog", "wolf", "canine", "car"])
    sim = np.array([[1.0, 0.6, 0.9, 0.1], [0.6, 1.0, 0.9, 0.1], [0.9, 0.9, 1.0, 0.1],
                    [0.1, 0.1, 0.1, 1.0]])
    d = np.array([[0.10, 0.11, 0.60, 0.90]], np.float32)
    nb = Neighbours(np.zeros((1, 1), int), d[:, :1], np.array([["dog"]]), d, classes, "cosine")
    w, s = rank_labels(nb, classes, "semantic", temperature=0.5, top_k=3,
                       centroid_dist=np.zeros((1, 4)), class_similarity=sim)
    assert w[0].tolist() == ["canine", "dog", "wolf"]
    p = np.exp(-d[0] / (0.5 * d[0].mean()))
    p /= p.sum()
    np.testing.assert_allclose(s[0], (p @ sim)[[2, 0, 1]], rtol=1e-5)
    w, _ = rank_labels(nb, classes, "semantic", temperature=1e-3, top_k=2,
                       centroid_dist=np.zeros((1, 4)), class_similarity=sim)
    assert w[0].tolist() == ["dog", "wolf"]
    with pytest.raises(ValueError, match="needs the class similarity"):
        rank_labels(nb, classes, "semantic")


@pytest.mark.parametrize("mode", ["center", "zscore"])
def test_normalised_labeller_equals_brute_force_on_normalised_features(bank_file, queries, mode):
    path, X, wnids, _ = bank_file
    rng = np.random.default_rng(3)
    mean, sd = rng.normal(size=32).astype(np.float32), rng.uniform(0.5, 2, 32).astype(np.float32)
    lab = KNNLabeller(k=1, metric="cosine", rule="nearest", normalize=mode, block_size=128)
    lab.fit(path, stats=(mean, sd))
    f = (lambda a: (a - mean) / sd) if mode == "zscore" else (lambda a: a - mean)
    D = pairwise_distances(f(queries), f(X), metric="cosine")
    assert lab.predict(queries).tolist() == wnids[D.argmin(1)].tolist()
    raw = KNNLabeller(k=1, metric="cosine", rule="nearest").fit(path).predict(queries)
    assert raw.tolist() != lab.predict(queries).tolist()  # the normalisation does something
    with pytest.raises(ValueError, match="needs the training features' mean"):
        KNNLabeller(normalize=mode).fit(path)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("metric", METRICS)
def test_labeller_against_brute_force(bank_file, queries, rule, metric):
    path, X, wnids, _ = bank_file
    lab = KNNLabeller(k=5, metric=metric, rule=rule, temperature=0.5, top_k=4,
                      block_size=200).fit(path)
    ranked = lab.predict_labels(queries)
    assert len(ranked) == len(queries) and all(len(r) == 4 for r in ranked)
    assert all(len({w for w, _ in r}) == 4 for r in ranked)
    assert all(r[0][1] >= r[-1][1] for r in ranked)  # best first
    D = pairwise_distances(queries, X, metric=metric)
    if rule == "nearest":
        assert [r[0][0] for r in ranked] == wnids[D.argmin(1)].tolist()
    if rule == "centroid":
        classes = np.unique(wnids)
        if metric == "cosine":
            U = X / np.linalg.norm(X, axis=1, keepdims=True)
            cen = np.stack([U[wnids == c].mean(0) for c in classes])
        else:
            cen = np.stack([X[wnids == c].mean(0) for c in classes])
        want = classes[pairwise_distances(queries, cen, metric=metric).argmin(1)]
        assert [r[0][0] for r in ranked] == want.tolist()
    if rule == "vote":
        top = np.argsort(D, 1)[:, :5]
        for r, row in zip(ranked, top):
            labels, counts = np.unique(wnids[row], return_counts=True)
            assert r[0][1] == pytest.approx(counts.max() / 5)


def test_labeller_checks_its_parameters(bank_file):
    with pytest.raises(ValueError, match="Unknown metric='manhattan'; valid: euclidean, cosine"):
        KNNLabeller(metric="manhattan").fit(bank_file[0])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        KNNLabeller(temperature=0).fit(bank_file[0])
    with pytest.raises(ValueError, match="has dim 32"):
        KNNLabeller().fit(bank_file[0]).predict_labels(np.zeros((2, 5)))
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        KNNLabeller().fit("nope.h5")


def test_in_memory_bank_equals_file_bank(bank_file, queries):
    path, X, wnids, _ = bank_file
    a = KNNLabeller(rule="vote", k=9).fit(InMemoryBank(X, wnids)).predict_ranked(queries)
    b = KNNLabeller(rule="vote", k=9).fit(path).predict_ranked(queries)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5)
    # sklearn's fit(X, y): an array and its labels make the same in-memory bank
    c = KNNLabeller(rule="vote", k=9).fit(X, wnids).predict_ranked(queries)
    np.testing.assert_array_equal(a[0], c[0])
    np.testing.assert_array_equal(a[1], c[1])
    with pytest.raises(ValueError, match="needs its labels y"):
        KNNLabeller().fit(X)


def test_rules_are_the_registry():
    """``RULES`` names the functions of ``LABEL_RULES``, in order; an unknown rule is an
    error that lists them."""
    assert RULES == tuple(knn.LABEL_RULES) == ("nearest", "vote", "weighted", "centroid",
                                                  "semantic")
    nb = Neighbours(np.zeros((1, 1), np.int64), np.zeros((1, 1), np.float32),
                    np.array([[WNIDS[0]]]), np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="Unknown rule='nope'; valid: nearest, vote"):
        rank_labels(nb, np.array(WNIDS[:2]), rule="nope")


@pytest.mark.parametrize("metric", METRICS)
def test_faiss_flat_equals_torch_exact_and_ivfpq_recall(bank_file, queries, metric):
    pytest.importorskip("faiss", reason="faiss-cpu is not installed (optional extra 'faiss')")
    path = bank_file[0]
    exact = exact_search(queries, path, k=5, metric=metric)
    flat = FaissIndex("flat", metric).build(path)
    d, i = flat.search(queries, 5)
    np.testing.assert_array_equal(i, exact.indices)
    np.testing.assert_allclose(d, exact.distances, rtol=1e-3, atol=1e-3)
    lab = KNNLabeller(backend="faiss-flat", metric=metric, top_k=3).fit(path)
    ref = KNNLabeller(metric=metric, top_k=3).fit(path)
    np.testing.assert_array_equal(lab.predict_ranked(queries)[0][:, 0],
                                  ref.predict_ranked(queries)[0][:, 0])
    ivf = FaissIndex("ivfpq", metric, nlist=8, m=8, nbits=6, nprobe=8).build(path)
    _, ia = ivf.search(queries, 5)
    r = recall_at_k(ia, exact.indices)
    assert 0.3 <= r <= 1.0


def test_knn_pyfunc_roundtrip_and_bad_input(bank_file, queries, tmp_path):
    path, X, wnids, _ = bank_file
    from sbd.registry.knn_model import KNNModel, log_knn_model

    lab = KNNLabeller(k=5, rule="weighted", temperature=0.3, top_k=3).fit(path)
    names = {w: f"name of {w}" for w in np.unique(wnids)}
    moved = tmp_path / "moved.h5"
    moved.write_bytes(path.read_bytes())
    with mlflow.start_run():
        info_art = log_knn_model(lab, path, name="knn", names=names)
        info_gone = log_knn_model(lab, moved, name="knn_gone", names=names, max_bank_mb=0)
        info_ref = log_knn_model(lab, path, name="knn_ref", names=names, max_bank_mb=0,
                                 in_memory_mb=0)  # by reference, streamed from the file
    cols = [f"f{i}" for i in range(32)]
    df = pd.DataFrame(queries, columns=cols)
    want_w, want_s = lab.predict_ranked(queries)
    for info in (info_art, info_ref):
        model = mlflow.pyfunc.load_model(info.model_uri)
        out = model.predict(df)
        assert list(out.columns) == ["wnid_1", "wnid_2", "wnid_3", "name_1", "name_2", "name_3",
                                     "score_1", "score_2", "score_3"]
        np.testing.assert_array_equal(out[["wnid_1", "wnid_2", "wnid_3"]].to_numpy(), want_w)
        np.testing.assert_allclose(out[["score_1", "score_2", "score_3"]].to_numpy(), want_s,
                                   rtol=1e-6)
        assert out["name_1"][0] == names[out["wnid_1"][0]]
    py = mlflow.pyfunc.load_model(info_art.model_uri).unwrap_python_model()
    assert isinstance(py, KNNModel) and py.labeller.bank_.array() is not None  # mapped, no copy
    ref = mlflow.pyfunc.load_model(info_ref.model_uri).unwrap_python_model()
    assert isinstance(ref.labeller.bank_, FeatureBank) and ref.config["bank_ref"] == str(
        path.resolve())
    np.testing.assert_array_equal(py.predict_ranked(queries)[0], want_w)  # arrays too
    moved.unlink()
    with pytest.raises(mlflow.exceptions.MlflowException, match="moved.h5.*is missing"):
        mlflow.pyfunc.load_model(info_gone.model_uri)
    with pytest.raises(InvalidModelInput, match="NaN"):
        bad = queries.copy()
        bad[1, 3] = np.nan
        py.predict(None, bad)
    with pytest.raises(InvalidModelInput, match="expected 32 feature columns"):
        py.predict(None, queries[:, :5])


def test_served_knn_model_takes_the_search_path_of_its_labeller(bank_file, queries):
    """``half`` of the labeller travels in the model's config: a server loads the same path
    (``half=False``: the float32 path of CPUs without AVX-512) and answers the same labels."""
    path, _, _, _ = bank_file
    from sbd.registry.knn_model import log_knn_model

    labs = {half: KNNLabeller(k=5, top_k=3, half=half).fit(path) for half in (False, True)}
    with mlflow.start_run():
        infos = {half: log_knn_model(lab, path, name=f"knn_{half}") for half, lab in labs.items()}
    for half, info in infos.items():
        py = mlflow.pyfunc.load_model(info.model_uri).unwrap_python_model()
        assert py.config["params"]["half"] is half and py.labeller.half is half
        np.testing.assert_array_equal(py.predict_ranked(queries)[0],
                                      labs[True].predict_ranked(queries)[0])


def test_fewer_rows_than_k_after_exclusion():
    X = np.random.default_rng(0).normal(size=(6, 4))
    wnids = ["n01440764"] * 2 + ["n01443537"] * 2 + ["n01484850"] * 2
    classes, codes = knn.class_codes(wnids)
    exclude = np.array([1, 1, 1, 1, 0, 1], bool)
    nb = exact_search(X[:2], InMemoryBank(X, wnids), 4, codes=codes, exclude=exclude)
    assert (nb.indices[:, 0] == 4).all() and (nb.indices[:, 1:] == -1).all()
    assert (nb.wnids[:, 1:] == "").all() and np.isinf(nb.distances[:, 1:]).all()
    for rule in ("vote", "weighted"):
        w, s = rank_labels(nb, classes, rule, k=4, top_k=3,
                           centroid_dist=np.zeros((2, 3), np.float32))
        assert (w[:, 0] == "n01484850").all() and np.isfinite(s).all()


def test_served_bank_is_loaded_once_in_the_fastest_form_that_fits(tmp_path, caplog):
    """load_bank: a contiguous bank is memory-mapped as is; normalised features are computed
    once into float16; an older gzip bank is decompressed once; a bank over the limit is
    streamed, with a warning that says so and what to do."""
    from sbd.registry.knn_model import load_bank

    path, X, wnids, _ = make_bank(tmp_path / "bank.h5")
    old = make_bank(tmp_path / "old.h5", storage="gzip")[0]
    norm = knn.FeatureNormalizer("zscore", X.mean(0), X.std(0))
    mapped, normalized = load_bank(path)
    assert isinstance(mapped, FeatureBank) and mapped.array() is not None and not normalized
    copy, normalized = load_bank(path, norm)
    assert isinstance(copy, InMemoryBank) and normalized and copy.features.dtype == np.float16
    np.testing.assert_allclose(copy.features, norm(X), rtol=1e-3, atol=1e-3)
    unpacked, _ = load_bank(old)
    assert isinstance(unpacked, InMemoryBank)
    np.testing.assert_array_equal(unpacked.features.astype(np.float32), X)
    with caplog.at_level("WARNING"):
        streamed, normalized = load_bank(path, norm, in_memory_mb=0.001)
    assert isinstance(streamed, FeatureBank) and not normalized
    assert "does not fit in memory" in caplog.text and "faiss-ivf" in caplog.text
    # the labeller answers the same from each form
    lab = KNNLabeller(normalize="zscore", top_k=3)
    want = lab.fit(path, stats=norm).predict_ranked(X[:5])
    got = KNNLabeller(normalize="zscore", top_k=3).fit(copy, stats=norm, bank_normalized=True)
    np.testing.assert_array_equal(got.predict_ranked(X[:5])[0], want[0])


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("piece_rows, threads", [(7, 1), (64, 3), (4096, 2)])
def test_float32_path_over_float16_rows_is_exact(bank_file, queries, metric, piece_rows,
                                                 threads):
    """The float32 path over a float16 matrix (CPUs without native float16 products):
    rows converted in pieces by several threads give sklearn's neighbours and distances."""
    import torch

    from sbd.decoding.knn import _half, _search

    path, X, _, _ = bank_file
    with FeatureBank(path) as fb:
        matrix = fb.array()
        q, q_const = _search._prepare_queries(torch.from_numpy(queries), metric)
        norms = _half.row_norms(fb, matrix, metric)
        with torch.inference_mode():
            blocks = list(_half.converted_scores(matrix, norms, q, metric, 100, piece_rows,
                                                 threads))
            got = _search._finish(torch.cat([d for _, d in blocks], 1), q_const, metric)
    want = pairwise_distances(queries, X, metric=metric)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)


def test_auto_half_takes_float16_products_only_where_they_are_faster(monkeypatch):
    from sbd.decoding.knn import _half

    monkeypatch.setattr(_half, "native_half", lambda: True)
    assert _half.use_half(None, 1, False) and _half.use_half(None, 500, True)
    assert not _half.use_half(None, _half.HALF_MAX_QUERIES + 1, False)
    assert _half.use_half(True, 500, False) and not _half.use_half(False, 1, True)
    monkeypatch.setattr(_half, "native_half", lambda: False)
    assert not _half.use_half(None, 1, True)
