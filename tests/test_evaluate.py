"""The evaluate step end to end on the small phantom.

The decoder is the real one: a MultiRidge fitted on the phantom's training voxels, a kNN
over the phantom bank, logged and registered through sbd.registry and composed by the
build_decoder step. The generation run is a run in the documented artifact format
(``generation.csv`` + ``generated/<sample>/rank<r>_<wnid>_<n>.png`` + ``grids/overview.png``)
whose rank-1 "generated" images are the stimuli themselves, so the 2AFC judge and the
identification of generated images must be perfect, and whose rank-2 images are noise.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from sbd.metrics.decoding import wup_permutation_p

BACKBONE = "efficientnet-lite0"
SUBJECT, ROI = 1, "VC"



def _generation_run(data_dir, tmp_path) -> str:
    """A generate run in the documented format: rank 1 = the stimulus, rank 2 = noise."""
    from PIL import Image

    from sbd.data import god

    test = god.load(data_dir, SUBJECT, ROI, "test")
    paths, missing = god.stimulus_paths(data_dir, test.image_ids, "test")
    assert not missing
    root = tmp_path / "gen"
    rng = np.random.default_rng(0)
    rows = []
    for i, (image_id, wnid, src) in enumerate(zip(test.image_ids, test.wnids, paths)):
        sid = f"{i:03d}"
        (root / "generated" / sid).mkdir(parents=True)
        rank1 = f"generated/{sid}/rank1_{wnid}_0.png"
        rank2 = f"generated/{sid}/rank2_n00001740_0.png"
        Image.open(src).convert("RGB").resize((64, 64)).save(root / rank1)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / rank2)
        rows.append(dict(sample_id=sid, image_id=image_id, true_wnid=wnid, true_name="",
                         decoded_wnids=f"{wnid};n00001740", decoded_names="", scores="1;0",
                         image_paths=f"{rank1};{rank2}", stimulus_path=f"stimuli/{sid}.png"))
    pd.DataFrame(rows).to_csv(root / "generation.csv", index=False)
    (root / "grids").mkdir()
    Image.new("RGB", (8, 8)).save(root / "grids" / "overview.png")
    with mlflow.start_run(run_name="generate") as run:
        mlflow.set_tags({"sbd.dataset": "phantom", "sbd.subject": str(SUBJECT), "sbd.roi": ROI})
        mlflow.log_artifacts(str(root))
    return run.info.run_id


def test_evaluate_end_to_end(phantom_features, mlflow_store, register_decoder, tmp_path):
    from sbd.steps import evaluate

    decoder = register_decoder(phantom_features)
    gen_run = _generation_run(phantom_features, tmp_path)
    run_id = evaluate.run(dataset="phantom", data_dir=str(phantom_features), subject=SUBJECT,
                          roi=ROI, generate_run=gen_run, n_chance=1000, seed=0)
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    m = run.data.metrics
    assert run.data.tags["sbd.entry_point"] == "evaluate"
    assert run.data.tags["sbd.decoder_uri"] == decoder
    assert run.data.tags["sbd.backbone"] == BACKBONE
    for split in ("test", "imagery"):
        for key in ("wup_top1", "wup_best_topk", "wup_chance", "wup_p", "top1_acc", "top5_acc",
                    "ident2_acc", "ident10_acc", "ident50_acc", "feature_r"):
            assert f"{split}/{key}" in m, f"{split}/{key} missing"
        assert 0 < m[f"{split}/wup_top1"] <= m[f"{split}/wup_best_topk"] <= 1
    # features are decoded (measured: r 0.53, 2-way 0.74); the small phantom's 10 test
    # images are too few for a stable semantic margin over chance, so none is asserted here
    assert m["test/feature_r"] > 0.3 and m["test/ident2_acc"] > 0.6
    assert m["test/wup_chance"] == pytest.approx(m["test/wup_chance_exact"], abs=4 * m["test/wup_chance_sd"] / 30)
    assert m["test/ident50_n"] == m["test/n_samples"] == 10  # n capped at the sample count
    # rank-1 "generated" images are the stimuli: the judge is perfect
    assert m["test/judge2afc_acc"] == 1.0
    assert m["test/gen_ident2_acc"] == 1.0
    assert m["test/judge2afc_p"] < 0.01
    assert "imagery/judge2afc_acc" not in m

    arts = {a.path for d in ("", "tables", "figures", "grids") for a in client.list_artifacts(run_id, d)}
    for split in ("test", "imagery"):
        for name in ("samples", "categories"):
            assert f"tables/{split}_{name}.csv" in arts and f"tables/{split}_{name}.json" in arts
        for fig in ("wup_vs_chance", "wordnet_graph", "categories"):
            assert f"figures/{split}_{fig}.png" in arts
    assert "grids/overview.png" in arts
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="tables/test_samples.csv",
                                                dst_path=str(tmp_path / "dl"))
    samples = pd.read_csv(local)
    assert len(samples) == m["test/n_samples"]
    assert samples["wup_top1"].mean() == pytest.approx(m["test/wup_top1"])
    # the permutation p pairs each sample's truth with its own answer
    assert m["test/wup_p"] == pytest.approx(wup_permutation_p(
        list(samples["true_wnid"]), list(samples["top1_wnid"]), n_perm=1000, seed=0))
    assert (samples["judge2afc"] == 1.0).all()
    assert {"image_id", "true_name", "top1_name", "lcs_name", "decoded_names"} <= set(samples.columns)
    # the paper's pipeline on the same samples, beside the decoder
    for key in ("wup_top1", "wup_chance", "wup_p", "top5_acc", "ident2_acc"):
        assert f"baseline/paper/{key}" in m, key
    assert samples["paper_wup_top1"].mean() == pytest.approx(m["baseline/paper/wup_top1"])
    # what the answers say about their own sample, for the decoder, the paper and the arms
    # that attribute the gain (the paper's features through sbd's labels, and vice versa)
    for prefix in ("test/", "baseline/paper/", "attribution/paper_features/",
                   "attribution/sbd_features/"):
        for key in ("wup_shuffled", "wup_specific", "wup_constant", "top1_acc_inbank",
                    "top5_acc_inbank", "n_inbank", "rank1_distinct", "ident2_acc"):
            assert f"{prefix}{key}" in m, f"{prefix}{key}"
        assert m[f"{prefix}wup_specific"] == pytest.approx(
            m[f"{prefix}wup_top1"] - m[f"{prefix}wup_shuffled"])
        assert m[f"{prefix}wup_specific_ci_low"] <= m[f"{prefix}wup_specific"] <= \
            m[f"{prefix}wup_specific_ci_high"]
    assert samples["wup_specific"].mean() == pytest.approx(m["test/wup_specific"])
    assert samples["paper_wup_specific"].mean() == pytest.approx(m["baseline/paper/wup_specific"])
    # each arm takes its features from one method and its labels from the other
    assert m["attribution/paper_features/ident2_acc"] == m["baseline/paper/ident2_acc"]
    assert m["attribution/sbd_features/ident2_acc"] == m["test/ident2_acc"]
    # the small phantom's bank holds 4 of its 10 test categories
    assert m["test/n_inbank"] == 4
    assert m["test/wup_top1"] <= 1 and m["test/wup_constant"] < 1
    assert "figures/test_vs_paper.png" in arts
    _check_field_metrics(client, run_id, m, arts, tmp_path)


def _check_field_metrics(client, run_id, m, arts, tmp_path):
    """The field's metrics: rank-1 images are the stimuli (at 64 px), so near their
    maximum; every one with its chance level and CI; the table, figure and skip list."""
    assert m["test/gen/n_field_samples"] == 10
    assert m["test/gen/pixcorr"] > 0.9 and m["test/gen/pixcorr_chance"] < 0.5
    assert m["test/gen/ssim"] > m["test/gen/ssim_ci_low"] > m["test/gen/ssim_chance"]
    assert m["test/gen/nway_top1"] > 0.8 and m["test/gen/nway_top1_chance"] == pytest.approx(0.02)
    for key in ("pixcorr", "ssim", "nway_top1", "nway_top1_max"):
        assert m[f"test/gen/{key}_ci_low"] <= m[f"test/gen/{key}"] <= m[f"test/gen/{key}_ci_high"]
        assert f"baseline/nearest_bank/gen/{key}" in m
    assert client.get_run(run_id).data.tags["sbd.field_classifier"] == "efficientnet-lite2"
    for name in ("field_metrics", "field_metrics_ci", "field_metrics_skipped"):
        assert f"tables/{name}.csv" in arts
    assert "figures/field_metrics.png" in arts
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="tables",
                                                dst_path=str(tmp_path / "field"))
    table = pd.read_csv(f"{local}/field_metrics.csv")
    # pixel metrics' chance comes from each method's own mismatched pairs: a chance row each
    assert list(table["method"]) == ["sbd", "nearest bank image", "chance (sbd)",
                                     "chance (nearest bank image)"]
    assert table.loc[2, "SSIM"] == pytest.approx(m["test/gen/ssim_chance"])
    assert table.loc[0, "PixCorr"] == pytest.approx(m["test/gen/pixcorr"])
    skipped = pd.read_csv(f"{local}/field_metrics_skipped.csv")
    # no weights are cached here: every feature space is skipped, each with its reason
    assert set(skipped["space"]) <= {"alex2", "alex5", "incep", "clip", "effnet", "swav"}
    assert skipped["reason"].str.len().gt(10).all()
    for space in set(skipped["space"]) & {"alex2", "incep", "effnet", "swav"}:
        assert f"test/gen/{space}" not in m


def test_evaluate_refuses_a_generation_run_of_other_data(phantom_features, tmp_path):
    from sbd import tracking
    from sbd.steps import evaluate

    with mlflow.start_run(run_name="generate") as other:
        mlflow.set_tags({"sbd.dataset": "phantom", "sbd.subject": "2", "sbd.roi": ROI})
    with pytest.raises(ValueError, match="sbd.subject='2'"):
        evaluate._load_generation(other.info.run_id, tracking.chain_tags("phantom", SUBJECT, ROI),
                                  tmp_path)
    with pytest.raises(ValueError, match="has no generation.csv"):
        evaluate._load_generation(other.info.run_id, tracking.chain_tags("phantom", 2, ROI),
                                  tmp_path)
    with pytest.raises(ValueError, match="n_chance"):
        evaluate.run(dataset="phantom", data_dir=str(phantom_features), n_chance=0)
