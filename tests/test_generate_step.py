"""The generate step end to end on the small phantom: a real decoder (ridge + kNN, registered
and composed by build_decoder), the tiny generator trained on the phantom bank because none is
registered (preset ``small``), every artifact in the documented layout, read back through the
MLflow client, and the images reproduced from their seeds."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest


BACKBONE = "efficientnet-lite0"
SUBJECT, ROI = 1, "VC"


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def test_generate_step_tiny_end_to_end(phantom_features, mlflow_store, register_decoder, tmp_path):
    from sbd.data import god
    from sbd.generate.generators import get_generator
    from sbd.steps import generate
    from sbd.steps import evaluate

    decoder = register_decoder(phantom_features)
    run_id = generate.run(decoder=decoder, dataset="phantom", data_dir=str(phantom_features),
                          subject=SUBJECT, roi=ROI, generator="tiny", top_k=2, n_per_label=1,
                          seed=7, device="cpu", tiny_preset="small", limit=3, progress=False)
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert run.data.tags["sbd.decoder_uri"] == decoder
    assert run.data.tags["sbd.dataset"] == "phantom" and run.data.tags["sbd.roi"] == ROI
    assert run.data.tags["sbd.model_id"] == "models:/sbd-phantom-tiny-generator/1"
    assert run.data.metrics["generate/n_images"] == 6 and run.data.metrics["generate/n_blanked"] == 0

    # the tiny model was trained in a nested run and registered with its kNN score
    mv = client.get_model_version_by_alias("sbd-phantom-tiny-generator", "champion")
    assert 0 <= float(mv.tags["val_score"]) <= 1 and "chance" in mv.tags
    assert mv.tags["preset"] == "small" and len(mv.tags["bank_sha"]) == 16

    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"generated", "stimuli", "grids", "generation.csv", "generation.json"} <= top
    csv = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="generation.csv",
                                              dst_path=str(tmp_path))
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert list(table.columns) == list(generate.COLUMNS) and len(table) == 3
    test = god.load(phantom_features, SUBJECT, ROI, "test")
    assert table["image_id"].tolist() == test.image_ids[:3]
    assert table["true_wnid"].tolist() == test.wnids[:3]
    grids = {a.path for a in client.list_artifacts(run_id, "grids")}
    assert "grids/overview.png" in grids and f"grids/{table['sample_id'][0]}.png" in grids

    # every image reads back through the client and is reproduced alone from its seed
    gen = get_generator("tiny", run.data.tags["sbd.model_id"], device="cpu")
    for i, row in table.iterrows():
        paths = row["image_paths"].split(";")
        wnids = row["decoded_wnids"].split(";")
        assert len(paths) == 2 == len(wnids) and len(row["scores"].split(";")) == 2
        assert paths[0] == f"generated/{row['sample_id']}/rank1_{wnids[0]}_0.png"
        stim = mlflow.artifacts.load_image(f"runs:/{run_id}/{row['stimulus_path']}")
        assert stim.size[0] > 0
        logged = mlflow.artifacts.load_image(f"runs:/{run_id}/{paths[1]}")
        again = gen.generate([wnids[1]], seed=7, sample=i)[0][0]
        assert (np.asarray(logged.convert("RGB")) == np.asarray(again)).all()

    # the evaluate step reads the table and the images, and copies the overview grid
    with mlflow.start_run() as reader:
        loaded = evaluate._load_generation(run_id, run.data.tags, tmp_path / "eval")
    assert all(p.exists() for ps in loaded["local_paths"] for p in ps)
    assert [r[:1] for r in loaded["ranks"]] == [[1]] * 3
    assert {a.path for a in client.list_artifacts(reader.info.run_id, "grids")} == {
        "grids/overview.png"}

    # a second run finds the model trained on this bank instead of training again
    again_id = generate.run(decoder=decoder, dataset="phantom", data_dir=str(phantom_features),
                            generator="tiny", top_k=1, limit=1, device="cpu",
                            tiny_preset="none", progress=False)
    assert client.get_run(again_id).data.tags["sbd.model_id"] == "models:/sbd-phantom-tiny-generator/1"
    assert len(client.search_model_versions("name = 'sbd-phantom-tiny-generator'")) == 1


def test_generate_step_errors(mlflow_store):
    from sbd.steps import generate

    with pytest.raises(ValueError, match="Unknown generator='gan'"):
        generate.run(generator="gan")
    with pytest.raises(ValueError, match="top_k and n_per_label"):
        generate.run(top_k=0)
