"""The decoder's output table, the Decoder composition, and the train_knn → build_decoder
chain end to end on the phantom dataset."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from sbd.data.layout import features_file
from sbd.decoding.decoder import Decoder, ranked_columns, ranked_frame, ranked_scores, ranked_wnids
from sbd.decoding.knn import InMemoryBank, KNNLabeller
from sbd.decoding.ridge import MultiRidge


def test_ranked_frame_layout_and_readers():
    wnids = np.array([["n01440764", "n01443537"], ["n01443537", "n01440764"]])
    scores = np.array([[0.9, 0.1], [0.6, 0.4]])
    df = ranked_frame(wnids, scores, {"n01440764": "tench", "n01443537": "goldfish"})
    assert list(df.columns) == ranked_columns(2) == ["wnid_1", "wnid_2", "name_1", "name_2",
                                                     "score_1", "score_2"]
    assert df.loc[1, "name_1"] == "goldfish"
    assert ranked_wnids(df) == wnids.tolist()
    np.testing.assert_allclose(ranked_scores(df), scores)
    # readers order ranks numerically, whatever the column order
    shuffled = df[["wnid_2", "score_2", "wnid_1", "name_1", "score_1", "name_2"]]
    assert ranked_wnids(shuffled) == wnids.tolist()
    with pytest.raises(ValueError, match="No wnid_<rank> columns"):
        ranked_wnids(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="must be equal 2-D shapes"):
        ranked_frame(wnids, scores[:, :1], {})


def test_decoder_composes_a_feature_model_and_a_labeller():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(6, 4))
    X = rng.normal(size=(30, 6))
    ridge = MultiRidge(alpha=1e-6).fit(X, X @ W)
    bank = InMemoryBank(rng.normal(size=(20, 4)), ["n01440764"] * 10 + ["n01443537"] * 10)
    lab = KNNLabeller(k=3, rule="vote", top_k=2).fit(bank)
    dec = Decoder(ridge, lab, names=lambda w: w.upper())
    out = dec.predict(X[:5])
    np.testing.assert_allclose(dec.predict_features(X[:5]), X[:5] @ W, atol=1e-4)
    assert ranked_wnids(out) == lab.predict_ranked(dec.predict_features(X[:5]))[0].tolist()
    assert out.loc[0, "name_1"] == out.loc[0, "wnid_1"].upper()


@pytest.mark.slow
def test_train_knn_and_build_decoder_on_the_phantom(phantom_features, mlflow_store):
    from sbd.data import god
    from sbd.decoding.decoder import ranked_wnids
    from sbd.registry.common import model_name
    from sbd.steps import build_decoder, train_knn, train_ridge

    kw = dict(dataset="phantom", data_dir=str(phantom_features), subject=1, roi="VC",
              backbone="efficientnet-lite0", seed=0)
    train_ridge.run(n_trials=2, **kw)
    knn_run = train_knn.run(n_trials=8, **kw)
    client = mlflow.MlflowClient()
    run = client.get_run(knn_run)
    m = run.data.metrics
    assert m["val/wup_top1"] >= m["paper/wup_top1"]  # the paper's rule is trial 0
    assert 0 < m["paper/wup_top1"] <= 1 and 0 <= m["val/top5_acc"] <= 1
    assert run.data.tags["sbd.ridge_params_source"].startswith("models:/sbd-phantom-s1-VC-ridge/")
    children = client.search_runs([run.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{knn_run}'")
    assert len(children) == 8 + 1  # trials + the paper's rule
    knn_name = model_name("knn", "phantom", backbone="efficientnet-lite0")
    mv = client.get_model_version_by_alias(knn_name, "champion")
    assert mv.tags["rule"] in ("nearest", "vote", "weighted", "centroid")
    assert float(mv.tags["val_score"]) == pytest.approx(m["val/wup_top1"])

    dec_run = build_decoder.run(dataset="phantom", subject=1, roi="VC",
                                backbone="efficientnet-lite0")
    dmv = client.get_model_version_by_alias(model_name("decoder", "phantom", 1, "VC"),
                                            "champion")
    assert dmv.tags["knn_uri"] == f"models:/{knn_name}/{mv.version}"
    assert client.get_run(dec_run).data.tags["sbd.decoder_uri"].endswith(f"/{dmv.version}")
    test = god.load(phantom_features, 1, "VC", "test")
    model = mlflow.pyfunc.load_model(f"models:/{dmv.name}@champion")
    table = pd.DataFrame(test.voxels.astype(np.float64),
                         columns=[f"v{i}" for i in range(test.voxels.shape[1])])
    out = model.predict(table)
    ranked = ranked_wnids(out)
    assert len(ranked) == len(test) and all(len(r) == 5 for r in ranked)
    feats = model.unwrap_python_model().predict_features(test.voxels)
    ridge = mlflow.pyfunc.load_model(dmv.tags["ridge_uri"])
    np.testing.assert_allclose(feats, ridge.predict(table).to_numpy(), rtol=1e-5, atol=1e-6)


def test_build_decoder_uses_the_model_versions_it_is_given(phantom_features, mlflow_store,
                                                           register_decoder):
    """A pinned kNN version is used even when another version is the champion; bad URIs
    are named in the error."""
    from sbd.decoding.knn import KNNLabeller
    from sbd.registry.common import model_name, register_model_version
    from sbd.registry.knn_model import log_knn_model
    from sbd.steps import build_decoder

    register_decoder(phantom_features)  # ridge v1, kNN v1 (k=5, score 0.4), decoder v1
    client = mlflow.MlflowClient()
    knn_name = model_name("knn", "phantom", backbone="efficientnet-lite0")
    bank = features_file(phantom_features, "efficientnet-lite0", "bank")
    with mlflow.start_run(run_name="knn-better"):
        info = log_knn_model(KNNLabeller(k=1).fit(bank), bank, name="knn")
    v2, champion = register_model_version(info.model_uri, knn_name, 0.9,
                                          tags={"dataset": "phantom",
                                                "backbone": "efficientnet-lite0"})
    assert champion and client.get_model_version_by_alias(knn_name, "champion").version == v2.version

    run = build_decoder.run(dataset="phantom", subject=1, roi="VC", backbone="efficientnet-lite0",
                            ridge=f"models:/{model_name('ridge', 'phantom', 1, 'VC')}@champion",
                            knn=f"models:/{knn_name}/1")
    tags = client.get_run(run).data.tags
    assert tags["sbd.knn_uri"] == f"models:/{knn_name}/1"
    assert tags["sbd.ridge_uri"] == f"models:/{model_name('ridge', 'phantom', 1, 'VC')}/1"
    run = build_decoder.run(dataset="phantom", subject=1, roi="VC", backbone="efficientnet-lite0")
    assert client.get_run(run).data.tags["sbd.knn_uri"] == f"models:/{knn_name}/{v2.version}"
    with pytest.raises(LookupError, match="No registered model version 'models:/.*knn/7'"):
        build_decoder.run(dataset="phantom", subject=1, roi="VC", knn=f"models:/{knn_name}/7")
    with pytest.raises(ValueError, match="'runs:/abc/knn' is not a registered model URI"):
        build_decoder.run(dataset="phantom", subject=1, roi="VC", knn="runs:/abc/knn")
