"""Generators: tiny Stable Diffusion / DiT / tiny-model pipelines built from configs, saved with
``save_pretrained`` and run through the same code as real weights (no network, no mocks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sbd.generate import generators
from sbd.generate.generators import (GENERATORS, LabelIndex, ModelNotFoundError, get_generator,
                                     image_seed, imagenet1k_wnids)

TENCH, GOLDFISH, DOG = "n01440764", "n01443537", "n02084071"  # dog: not an ImageNet-1k class


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tokenizer(folder):
    from transformers import CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["<|startoftext|>", "<|endoftext|>", "!"] + list(letters) + [c + "</w>" for c in letters]
    vocab = {t: i for i, t in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8, sample_size=16)


def _safety_checker(blank_all: bool):
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    cfg = CLIPConfig(text_config={"hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "vocab_size": 10},
                     vision_config={"hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "image_size": 16, "patch_size": 8},
                     projection_dim=8)
    checker = StableDiffusionSafetyChecker(cfg)
    if blank_all:  # every concept score above threshold: the checker blanks every image
        with torch.no_grad():
            checker.concept_embeds_weights.fill_(-10.0)
    proc = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    return checker, proc


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("sd")
    tok = _tokenizer(root)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37,
                                        num_attention_heads=4, num_hidden_layers=2,
                                        max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                                        pad_token_id=1))
    unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=8,
                                in_channels=4, out_channels=4, cross_attention_dim=32,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                norm_num_groups=8, attention_head_dim=4)
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    checker, proc = _safety_checker(blank_all=True)
    pipe = StableDiffusionPipeline(vae=_vae(), text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=sched, safety_checker=checker, feature_extractor=proc,
                                   requires_safety_checker=True)
    pipe.save_pretrained(root / "pipe")
    return root / "pipe"


@pytest.fixture(scope="module")
def dit_folder(tmp_path_factory):
    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("dit")
    tr = DiTTransformer2DModel(sample_size=8, patch_size=2, in_channels=4, out_channels=8,
                               num_layers=2, num_attention_heads=2, attention_head_dim=8,
                               norm_num_groups=8, num_embeds_ada_norm=1000)
    pipe = DiTPipeline(transformer=tr, vae=_vae(), scheduler=DDIMScheduler())
    pipe.save_pretrained(root / "pipe")
    return root / "pipe"


def _arrays(images):
    return [[np.asarray(im) for im in row] for row in images]


def test_registry_and_unknown_name():
    assert set(GENERATORS) == {"sd", "dit", "tiny"}
    with pytest.raises(ValueError, match="Unknown generator='vqgan'; valid: sd, dit, tiny"):
        get_generator("vqgan")


def test_imagenet1k_list():
    wnids = imagenet1k_wnids()
    assert len(wnids) == 1000 == len(set(wnids))
    assert wnids[0] == TENCH and wnids[-1] == "n15075141" and list(wnids) == sorted(wnids)


def test_image_seed_depends_on_every_part():
    base = image_seed(0, 0, TENCH, 0)
    assert base == image_seed(0, 0, TENCH, 0) and 0 <= base < 2**63
    assert len({base, image_seed(1, 0, TENCH, 0), image_seed(0, 1, TENCH, 0),
                image_seed(0, 0, GOLDFISH, 0), image_seed(0, 0, TENCH, 1)}) == 5


def test_sd_same_seed_same_pixels_and_blanked_flag(sd_folder):
    gen = get_generator("sd", str(sd_folder), device="cpu", steps=2, safety_checker=False)
    a = gen.generate([TENCH, GOLDFISH], seed=3, n_per_label=2, sample=1)
    assert [len(r) for r in a] == [2, 2] and a[0][0].size == (16, 16) and a[0][0].mode == "RGB"
    assert a[0][0].info["sbd.prompt"] == "An image of a tench"
    assert a[0][0].info["sbd.blanked"] == "false"
    b = gen.generate([TENCH, GOLDFISH], seed=3, n_per_label=2, sample=1)
    assert all((x == y).all() for rx, ry in zip(_arrays(a), _arrays(b)) for x, y in zip(rx, ry))
    # any single image is reproduced alone
    alone = gen.generate([GOLDFISH], seed=3, n_per_label=2, sample=1)
    assert (np.asarray(alone[0][1]) == np.asarray(a[1][1])).all()
    assert not (np.asarray(a[0][0]) == np.asarray(a[0][1])).all()
    other = gen.generate([TENCH], seed=4, sample=1)
    assert not (np.asarray(other[0][0]) == np.asarray(a[0][0])).all()
    # the model's own safety checker (tiny, set to flag everything) blanks and is reported
    checked = get_generator("sd", str(sd_folder), device="cpu", steps=2, prompt="a {name} photo")
    img = checked.generate([TENCH], seed=3)[0][0]
    assert img.info["sbd.blanked"] == "true" and np.asarray(img).max() == 0
    assert img.info["sbd.prompt"] == "a tench photo"


def test_sd_errors(sd_folder, tmp_path, monkeypatch):
    gen = get_generator("sd", str(sd_folder), device="cpu", steps=1, safety_checker=False)
    with pytest.raises(ValueError, match="Empty label list"):
        gen.generate([], seed=0)
    with pytest.raises(ValueError, match="n99999999"):
        gen.generate([TENCH, "n99999999"], seed=0)
    with pytest.raises(ValueError, match="Malformed"):
        gen.generate(["dog"], seed=0)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        get_generator("sd", str(tmp_path / "missing"), device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="offline mode"):
        get_generator("sd", "sbd-test/no-such-model", device="cpu")
    with pytest.raises(ValueError, match="needs a \\{name\\}"):
        get_generator("sd", str(sd_folder), device="cpu", prompt="a photo")


def test_dit_class_index_and_nearest(dit_folder, caplog):
    gen = get_generator("dit", str(dit_folder), device="cpu", steps=2, guidance=2.0)
    assert gen.condition(TENCH) == 0 and gen.condition(GOLDFISH) == 1
    with caplog.at_level("INFO", logger="sbd.generate.labels"):
        out = gen.generate([DOG, TENCH], seed=0)
    assert "nearest class" in caplog.text
    mapped, score = gen.labels.mapped[DOG]
    assert mapped in imagenet1k_wnids() and 0 < score <= 1
    assert out[0][0].info["sbd.class_wnid"] == mapped and out[1][0].info["sbd.class_index"] == "0"
    again = get_generator("dit", str(dit_folder), device="cpu", steps=2, guidance=2.0,
                          batch_size=4).generate([TENCH], seed=0)
    assert np.abs(np.asarray(again[0][0], int) - np.asarray(out[1][0], int)).max() <= 1
    strict = get_generator("dit", str(dit_folder), device="cpu", steps=1, out_of_set="error")
    with pytest.raises(ValueError, match="not one of the model's 1000 classes"):
        strict.generate([DOG], seed=0)
    with pytest.raises(ValueError, match="Unknown out_of_set"):
        LabelIndex(["n01440764"], out_of_set="maybe")


def test_unknown_device():
    with pytest.raises(ValueError, match="Unknown device='tpu'"):
        generators.resolve_device("tpu")
