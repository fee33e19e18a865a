"""The ``hidden`` AN kind: every layer's hidden state equals the model's own ``output_hidden_states``.

Tiny random-weight configs built in the test; nothing is downloaded.
"""

import numpy as np
import pytest
import torch
from PIL import Image

import alignment  # noqa: F401  (makes torchvision importable before transformers)
from alignment.conventions import AN_KINDS, layer_name
from alignment.extract import extract_ans
from alignment.models import ModelError, load_model
from alignment.models.base import pool_tokens

CAPTIONS = ["a red ball on grass", "two dogs", "a woman rides a bicycle past a bakery"]


def _frames(n, seed=0):
    rng = np.random.RandomState(seed)
    return [Image.fromarray(rng.randint(0, 255, (70 + i, 90, 3), dtype=np.uint8)) for i in range(n)]


def _reference(adapter, frames, captions, branch, pooling):
    """Pooled ``output_hidden_states`` of the model itself, (L + 1) arrays (B, N)."""
    from alignment.extract import image_tensor

    images = image_tensor(adapter, frames, range(len(frames))) if adapter.needs_images else \
        (list(frames) if adapter.needs_frames else None)
    batch = adapter.prepare(images, captions, [branch])
    with torch.no_grad():
        states = adapter.reference_hidden_states(batch, branch) if hasattr(adapter, "reference_hidden_states") \
            else _own_states(adapter, batch, branch)
    mask, cls = batch.token_mask.get(branch), batch.cls_index.get(branch)
    # a convolutional map (B, C, H, W) is averaged over its positions
    return [h.float().flatten(2).mean(2).numpy() if h.dim() == 4 else pool_tokens(h.float(), mask, cls, pooling).numpy()
            for h in states]


def _own_states(adapter, batch, branch):
    model, inputs = adapter.model, batch.inputs
    if adapter.spec.arch in ("hf-clip", "align"):
        if branch == "image":
            return model.vision_model(pixel_values=inputs["pixel_values"], output_hidden_states=True).hidden_states
        return model.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                output_hidden_states=True).hidden_states
    return model(**inputs, output_hidden_states=True).hidden_states


EXISTING = ["random:hf-clip:tiny", "random:vit:tiny", "random:roberta:tiny", "minilm"]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("spec", EXISTING)
def test_hidden_equals_output_hidden_states(spec, pooling):
    adapter = load_model(spec)
    frames = _frames(3)
    out = extract_ans(adapter, frames, CAPTIONS, kind="hidden", pooling=pooling)
    for branch, b in adapter.branches.items():
        ref = _reference(adapter, frames, CAPTIONS, branch, pooling)
        assert b.layer_count("hidden") == b.n_layers + 1 == len(ref)
        for layer, expected in enumerate(ref):
            np.testing.assert_allclose(out[(branch, layer)], expected, rtol=1e-4, atol=1e-5)
        # the embeddings differ from the first block's output
        assert not np.allclose(out[(branch, 0)], out[(branch, 1)])


def test_hidden_is_an_an_kind_with_study_layer_names():
    assert "hidden" in AN_KINDS
    assert [layer_name("hidden", i) for i in range(3)] == ["emb", "L1", "L2"]
    assert layer_name("attn", 0) == "L1"


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_bridgetower_tower_hidden_equals_output_hidden_states(pooling):
    from alignment.extract import image_tensor

    adapter = load_model("random:bridgetower:tiny")
    frames = _frames(3)
    out = extract_ans(adapter, frames, CAPTIONS, kind="hidden", pooling=pooling)
    assert {b for b, _ in out} == {"text", "image"}
    batch = adapter.prepare(image_tensor(adapter, frames, range(3)), CAPTIONS, list(adapter.branches))
    with torch.no_grad():
        text, image, _ = adapter.model(**batch.inputs, output_hidden_states=True).hidden_states
    for branch, states in (("text", text), ("image", image)):
        assert len(states) == adapter.branches[branch].layer_count("hidden")
        for layer, h in enumerate(states):
            h = h.transpose(0, 1) if branch == "image" else h  # the vision blocks run tokens-first
            expected = pool_tokens(h, batch.token_mask.get(branch), batch.cls_index.get(branch), pooling).numpy()
            np.testing.assert_allclose(out[(branch, layer)], expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ModelError, match="'cross_text' .* has no 'hidden' ANs"):
        extract_ans(adapter, frames, CAPTIONS, {"cross_text": None}, kind="hidden")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_open_clip_hidden_equals_forward_intermediates(pooling):
    """open_clip has no ``output_hidden_states``: its ``forward_intermediates`` (block outputs)
    and its own embedding code are the references."""
    from alignment.extract import image_tensor

    adapter = load_model("random:clip:demo-tiny")
    model = adapter.model
    frames = _frames(3)
    out = extract_ans(adapter, frames, CAPTIONS, kind="hidden", pooling=pooling)
    batch = adapter.prepare(image_tensor(adapter, frames, range(3)), CAPTIONS, ["image", "text"])
    images, tokens = batch.inputs["image"], batch.inputs["text"]
    length = tokens.shape[1]
    padded = torch.nn.functional.pad(tokens, (0, model.context_length - length))  # open_clip's own 77 tokens
    with torch.no_grad():
        inter = model.forward_intermediates(image=images, text=padded, intermediates_only=True, image_output_fmt="NLC",
                                            image_output_extra_tokens=True, text_output_fmt="NLC")
        text = model.text if hasattr(model, "text") else model
        image_states = [model.visual._embeds(images)] + [torch.cat([p, x], dim=1) for p, x in
                                                        zip(inter["image_intermediates_prefix"], inter["image_intermediates"])]
        text_states = [text.token_embedding(tokens) + text.positional_embedding[:length]] + \
            [h[:, :length] for h in inter["text_intermediates"]]  # causal: later positions change nothing
    for branch, states in (("image", image_states), ("text", text_states)):
        assert len(states) == adapter.branches[branch].layer_count("hidden")
        for layer, h in enumerate(states):
            expected = pool_tokens(h, batch.token_mask.get(branch), batch.cls_index.get(branch), pooling).numpy()
            np.testing.assert_allclose(out[(branch, layer)], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec", ["random:meter:tiny"])
def test_hidden_refused_where_the_adapter_has_no_hidden_taps(spec):
    adapter = load_model(spec)
    with pytest.raises(ModelError, match="no 'hidden' ANs"):
        extract_ans(adapter, _frames(1), CAPTIONS[:1], kind="hidden")


def test_hidden_layer_range_checked():
    adapter = load_model("random:roberta:tiny")
    n = adapter.branches["text"].layer_count("hidden")
    extract_ans(adapter, [None], ["x"], {"text": [n - 1]}, kind="hidden")
    with pytest.raises(ModelError, match="hidden layers 0..3"):
        extract_ans(adapter, [None], ["x"], {"text": [n]}, kind="hidden")


# ---------------------------------------------------------------------------------------------
# language models of the concept-RSA study

LANGUAGE = ["random:bert:tiny", "random:causal-lm:tiny", "random:causal-lm:tiny-mha", "random:llama:tiny",
            "random:mistral:tiny"]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("spec", LANGUAGE)
def test_language_hidden_equals_output_hidden_states(spec, pooling):
    adapter = load_model(spec)
    out = extract_ans(adapter, [None] * 3, CAPTIONS, kind="hidden", pooling=pooling)
    ref = _reference(adapter, [None] * 3, CAPTIONS, "text", pooling)
    assert len(ref) == adapter.model.config.num_hidden_layers + 1
    for layer, expected in enumerate(ref):
        np.testing.assert_allclose(out[("text", layer)], expected, rtol=1e-4, atol=1e-5)


def test_random_causal_lm_classes():
    assert type(load_model("random:llama:tiny").model).__name__ == "LlamaForCausalLM"
    assert type(load_model("random:mistral:tiny").model).__name__ == "MistralForCausalLM"


@pytest.mark.parametrize("kind", ["hidden", "attn", "mlp"])
def test_causal_lm_batch_mates_and_padding_do_not_matter(kind):
    adapter = load_model("random:causal-lm:tiny")
    alone = extract_ans(adapter, [None], CAPTIONS[1:2], kind=kind)
    padded = extract_ans(adapter, [None] * 3, CAPTIONS, kind=kind)
    for key, value in alone.items():
        np.testing.assert_allclose(padded[key][1], value[0], rtol=1e-4, atol=1e-5)


def test_causal_lm_pooling_masks():
    from alignment.models.language import text_pooling_masks

    ids = torch.tensor([[7, 5, 6, 0, 0], [7, 5, 6, 8, 9], [0, 0, 7, 5, 0], [7, 0, 0, 0, 0]])
    attention = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 0], [1, 0, 0, 0, 0]])
    mask, last = text_pooling_masks(ids, attention, bos_id=7)
    assert last.tolist() == [2, 4, 3, 0]  # the last real token, whichever side is padded
    assert mask.long().tolist() == [[0, 1, 1, 0, 0], [0, 1, 1, 1, 1], [0, 0, 0, 1, 0], [1, 0, 0, 0, 0]]


def test_causal_lm_has_no_qk_with_grouped_keys_and_quantize_needs_gpu():
    adapter = load_model("random:causal-lm:tiny")
    with pytest.raises(ModelError, match="no 'qk' ANs"):
        extract_ans(adapter, [None], ["x"], kind="qk")
    assert "qk" in load_model("random:causal-lm:tiny-mha").branches["text"].sizes
    with pytest.raises(ModelError, match="quantize=4bit"):
        load_model("random:causal-lm:tiny?quantize=4bit")
    with pytest.raises(ModelError, match="unknown dtype"):
        load_model("random:causal-lm:tiny?dtype=int3")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_quantize_refused_without_gpu(tmp_path):
    adapter = load_model("random:causal-lm:tiny")
    adapter.model.save_pretrained(tmp_path)
    adapter.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="(CUDA GPU|bitsandbytes)"):
        load_model(f"causal-lm:{tmp_path}?quantize=4bit")
    # the same folder loads without quantization, with the same hidden states
    again = load_model(f"causal-lm:{tmp_path}")
    a = extract_ans(adapter, [None] * 2, CAPTIONS[:2], kind="hidden")
    b = extract_ans(again, [None] * 2, CAPTIONS[:2], kind="hidden")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_glove_mean_of_word_vectors_and_oov(tmp_path):
    path = tmp_path / "glove.test.3d.txt"
    path.write_text("the 1 0 0\ncat 0 2 0\nsat 0 0 3\n's 1 1 1\nice-cream 2 2 2\n")
    adapter = load_model(f"glove:{path}")
    assert adapter.branches["text"].layer_count("hidden") == 1
    with pytest.warns(UserWarning, match="1 words without a GloVe vector.*dog"):
        out = extract_ans(adapter, [None] * 4, ["The cat sat.", "the dog's ice-cream", "Dog", ""], kind="hidden")
    np.testing.assert_allclose(out[("text", 0)], [[1 / 3, 2 / 3, 1], [4 / 3, 1, 1], [0, 0, 0], [0, 0, 0]], atol=1e-6)
    assert adapter.oov == {"dog": 2}
    with pytest.raises(ModelError, match="no 'attn' ANs"):
        extract_ans(adapter, [None], ["cat"], kind="attn")
    with pytest.raises(ModelError, match="not found"):
        load_model(f"glove:{tmp_path / 'missing.txt'}")
    bad = tmp_path / "bad.txt"
    bad.write_text("cat 1 2\ndog 1 x\n")
    with pytest.raises(ModelError, match="bad.txt:2"):
        load_model(f"glove:{bad}")


# ---------------------------------------------------------------------------------------------
# vision-language models of the concept-RSA study


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_align_hidden_equals_output_hidden_states(pooling):
    adapter = load_model("random:align:tiny")
    frames = _frames(3)
    out = extract_ans(adapter, frames, CAPTIONS, kind="hidden", pooling=pooling)
    for branch, n in (("text", adapter.model.config.text_config.num_hidden_layers + 1),
                      ("image", len(adapter.model.vision_model.encoder.blocks) + 1)):
        ref = _reference(adapter, frames, CAPTIONS, branch, pooling)
        assert len(ref) == n == adapter.branches[branch].layer_count("hidden")
        for layer, expected in enumerate(ref):
            assert out[(branch, layer)].shape == expected.shape
            np.testing.assert_allclose(out[(branch, layer)], expected, rtol=1e-4, atol=1e-5)
    assert len({out[("image", layer)].shape[1] for layer in range(n)}) > 1  # widths differ by block
    with pytest.raises(ModelError, match="no 'attn' ANs"):
        extract_ans(adapter, frames, CAPTIONS, {"image": None}, kind="attn")


def _region_file(path, rng, dim=16):
    keys = np.array(["cat/1.jpg", "2.jpg", "dog/1.jpg"])
    np.savez(path, keys=keys, features=rng.randn(3, 5, dim).astype(np.float32),
             boxes=rng.rand(3, 5, 4).astype(np.float32), counts=np.array([5, 3, 2]))
    return path


def _sourced_frames(sources):
    frames = _frames(len(sources))
    for frame, source in zip(frames, sources):
        frame.info["source"] = source
    return frames


SOURCES = ["/data/pictures/cat/1.jpg", "/data/pictures/bird/2.jpg", "/data/pictures/dog/1.jpg"]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_visualbert_hidden_equals_output_hidden_states(tmp_path, pooling):
    regions = _region_file(tmp_path / "regions.npz", np.random.RandomState(0))
    adapter = load_model(f"random:visualbert:tiny?regions={regions}")
    frames = _sourced_frames(SOURCES)
    out = extract_ans(adapter, frames, CAPTIONS, kind="hidden", pooling=pooling)
    for branch in ("cross_text", "cross_image"):
        ref = _reference(adapter, frames, CAPTIONS, branch, pooling)
        assert len(ref) == adapter.model.config.num_hidden_layers + 1
        for layer, expected in enumerate(ref):
            np.testing.assert_allclose(out[(branch, layer)], expected, rtol=1e-4, atol=1e-5)
    # the region features reach the model: another image changes both streams
    swapped = extract_ans(adapter, frames[::-1], CAPTIONS, kind="hidden", pooling=pooling)
    assert not np.allclose(out[("cross_text", 2)][0], swapped[("cross_text", 2)][0])


def test_visualbert_regions_lookup_padding_and_text_condition(tmp_path):
    from alignment.models.vision_language import RegionFeatures

    rng = np.random.RandomState(1)
    regions = RegionFeatures(_region_file(tmp_path / "r.npz", rng), 16)
    frames = _sourced_frames(SOURCES)
    assert [regions.row(f) for f in frames] == [0, 1, 2]
    features, boxes, mask = regions.batch([frames[2], None])
    assert features.shape == (2, 2, 16) and boxes.shape == (2, 2, 4) and mask.tolist() == [[True, True], [False, False]]
    adapter = load_model(f"random:visualbert:tiny?regions={tmp_path / 'r.npz'}")
    alone = extract_ans(adapter, frames[2:], CAPTIONS[2:], kind="hidden")
    together = extract_ans(adapter, frames, CAPTIONS, kind="hidden")  # more regions and tokens in the batch
    for key, value in alone.items():
        np.testing.assert_allclose(together[key][2], value[0], rtol=1e-4, atol=1e-5)
    text = extract_ans(adapter, frames, CAPTIONS, kind="hidden", condition="text")
    assert np.all(text[("cross_image", 1)] == 0)  # no regions to pool
    assert not np.allclose(text[("cross_text", 1)], together[("cross_text", 1)])


def test_region_features_refused_clearly(tmp_path):
    rng = np.random.RandomState(2)
    with pytest.raises(ModelError, match=r"\?regions="):
        load_model("random:visualbert:tiny")
    with pytest.raises(ModelError, match="not found"):
        load_model(f"random:visualbert:tiny?regions={tmp_path / 'none.npz'}")
    wrong = _region_file(tmp_path / "wide.npz", rng, dim=8)
    with pytest.raises(ModelError, match=r"features must be \(3, regions, 16\)"):
        load_model(f"random:visualbert:tiny?regions={wrong}")
    np.savez(tmp_path / "nobox.npz", keys=np.array(["a.jpg"]), features=np.zeros((1, 2, 16), np.float32))
    with pytest.raises(ModelError, match="lack boxes"):
        load_model(f"random:visualbert:tiny?regions={tmp_path / 'nobox.npz'}")
    adapter = load_model(f"random:visualbert:tiny?regions={_region_file(tmp_path / 'ok.npz', rng)}")
    with pytest.raises(ModelError, match="no region features for image /x/fish.jpg"):
        extract_ans(adapter, _sourced_frames(["/x/fish.jpg"]), ["a fish"], kind="hidden")
    with pytest.raises(ModelError, match="has no file path"):
        extract_ans(adapter, _frames(1), ["a fish"], kind="hidden")


def test_datasets_record_the_frame_file(tmp_path):
    from alignment.data.dataset import FolderDataset

    path = tmp_path / "img.png"
    Image.new("RGB", (8, 8)).save(path)
    frame = FolderDataset.load_frame.__get__(type("D", (), {"frame_path": lambda self, rel: str(path)})())("img.png")
    assert frame.info["source"] == str(path)


def test_noise_image_is_seeded_and_of_the_model_size():
    from alignment.extract import NOISE_MEAN, NOISE_STD, image_tensor, noise_image

    adapter = load_model("random:hf-clip:tiny")
    a, b, c = noise_image(adapter, seed=3), noise_image(adapter, seed=3), noise_image(adapter, seed=4)
    assert a.size == (adapter.image_size, adapter.image_size) and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b)) and not np.array_equal(np.asarray(a), np.asarray(c))
    assert noise_image((40, 30), seed=0).size == (40, 30)
    pixels = np.asarray(noise_image(256, seed=0), dtype=float) / 255
    assert abs(pixels.mean() - NOISE_MEAN) < 0.01 and abs(pixels.std() - NOISE_STD) < 0.01
    # at the model's size preprocessing keeps the pixels: only normalised
    x = image_tensor(adapter, [a], [0])[0].numpy()
    expected = (np.asarray(a, dtype=np.float32).transpose(2, 0, 1) / 255 - np.array(adapter.image_mean)[:, None, None]) \
        / np.array(adapter.image_std)[:, None, None]
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ModelError, match="takes no images"):
        noise_image(load_model("random:bert:tiny"))


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_lxmert_hidden_equals_output_hidden_states(tmp_path, pooling):
    regions = _region_file(tmp_path / "regions.npz", np.random.RandomState(3))
    adapter = load_model(f"random:lxmert:tiny?regions={regions}")
    frames = _sourced_frames(SOURCES)
    out = extract_ans(adapter, frames, CAPTIONS, kind="hidden", pooling=pooling)
    batch = adapter.prepare(frames, CAPTIONS, ["text", "image"])
    model, inputs = adapter.model, batch.inputs
    with torch.no_grad():
        res = model(**inputs, output_hidden_states=True)
        # transformers leaves the embeddings out of LXMERT's hidden states
        text0 = model.embeddings(inputs["input_ids"], inputs["token_type_ids"])
        image0 = model.encoder.visn_fc(inputs["visual_feats"], inputs["visual_pos"])
    cfg = model.config
    for branch, first, states, n_blocks in (("text", text0, res.language_hidden_states, cfg.l_layers + cfg.x_layers),
                                            ("image", image0, res.vision_hidden_states, cfg.r_layers + cfg.x_layers)):
        assert len(states) == n_blocks and adapter.branches[branch].layer_count("hidden") == n_blocks + 1
        mask, cls = batch.token_mask[branch], batch.cls_index[branch]
        for layer, h in enumerate((first, *states)):
            np.testing.assert_allclose(out[(branch, layer)], pool_tokens(h, mask, cls, pooling).numpy(), rtol=1e-4, atol=1e-5)
    # the boxes matter to LXMERT (VisualBERT does not read them)
    np.savez(tmp_path / "moved.npz", **{**dict(np.load(regions)), "boxes": np.load(regions)["boxes"][::-1].copy()})
    moved = extract_ans(load_model(f"random:lxmert:tiny?regions={tmp_path / 'moved.npz'}"), frames, CAPTIONS, kind="hidden")
    assert not np.allclose(moved[("image", 0)], out[("image", 0)])


# ---------------------------------------------------------------------------------------------
# generative VLMs


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("spec", ["random:llava-next:tiny", "random:idefics2:tiny"])
def test_generative_vlm_hidden_equals_output_hidden_states(spec, pooling):
    adapter = load_model(spec)
    frames = _frames(3)
    out = extract_ans(adapter, frames, CAPTIONS, kind="hidden", pooling=pooling)
    batch = adapter.prepare(frames, CAPTIONS, list(adapter.branches))
    with torch.no_grad():
        states = adapter.model(**batch.inputs, output_hidden_states=True).hidden_states
    assert len(states) == adapter.model.config.get_text_config().num_hidden_layers + 1
    for branch in ("cross_text", "cross_image"):
        mask, cls = batch.token_mask[branch], batch.cls_index[branch]
        assert mask.any(dim=1).all()
        for layer, h in enumerate(states):
            np.testing.assert_allclose(out[(branch, layer)], pool_tokens(h, mask, cls, pooling).numpy(), rtol=1e-4, atol=1e-5)
    # text and image tokens are told apart, and every real token is one or the other (or the BOS)
    ids = batch.inputs["input_ids"]
    assert not (batch.token_mask["cross_text"] & batch.token_mask["cross_image"]).any()
    assert (ids[batch.token_mask["cross_image"]] == adapter.image_token_id).all()


@pytest.mark.parametrize("spec", ["random:llava-next:tiny", "random:idefics2:tiny"])
def test_generative_vlm_batch_mates_text_condition_and_noise_image(spec):
    from alignment.extract import noise_image

    adapter = load_model(spec)
    frames = _frames(3)
    alone = extract_ans(adapter, frames[1:2], CAPTIONS[1:2], kind="hidden")
    together = extract_ans(adapter, frames, CAPTIONS, kind="hidden")
    for key, value in alone.items():
        np.testing.assert_allclose(together[key][1], value[0], rtol=1e-4, atol=1e-5)
    text = extract_ans(adapter, frames, CAPTIONS, kind="hidden", condition="text")
    assert np.all(text[("cross_image", 2)] == 0) and not np.allclose(text[("cross_text", 2)], together[("cross_text", 2)])
    # the image ablation: the sentence with a noise image of the model's input size
    noise = noise_image(adapter, seed=0)
    assert noise.size == (adapter.image_size, adapter.image_size)
    ablated = extract_ans(adapter, [noise] * 3, CAPTIONS, kind="hidden")
    assert not np.allclose(ablated[("cross_text", 2)], together[("cross_text", 2)])


def test_adapters_leave_the_shared_tokenizer_alone():
    from alignment.models.tokenizers import offline_wordpiece

    before = (len(offline_wordpiece()), offline_wordpiece().padding_side, offline_wordpiece().pad_token)
    for spec in ("random:llava-next:tiny", "random:idefics2:tiny", "random:causal-lm:tiny"):
        load_model(spec)
    assert (len(offline_wordpiece()), offline_wordpiece().padding_side, offline_wordpiece().pad_token) == before


def test_local_folders_load_with_the_same_hidden_states(tmp_path):
    from alignment.models.tokenizers import minilm_dir

    # BERT from a local folder (the shipped MiniLM is a BERT)
    bert, mini = load_model(f"bert:{minilm_dir()}"), load_model("minilm")
    a = extract_ans(bert, [None] * 2, CAPTIONS[:2], kind="hidden")
    b = extract_ans(mini, [None] * 2, CAPTIONS[:2], kind="hidden")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # a generative VLM saved with its processor
    vlm = load_model("random:llava-next:tiny")
    vlm.model.save_pretrained(tmp_path / "llava")
    vlm.processor.save_pretrained(tmp_path / "llava")
    again = load_model(f"llava-next:{tmp_path / 'llava'}")
    frames = _frames(2)
    a = extract_ans(vlm, frames, CAPTIONS[:2], kind="hidden")
    b = extract_ans(again, frames, CAPTIONS[:2], kind="hidden")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
    with pytest.raises(ModelError, match="holds a 'llava_next' model, but 'idefics2' expects"):
        load_model(f"idefics2:{tmp_path / 'llava'}")


def test_causal_lm_of_another_layout_is_refused_clearly():
    from transformers import GPT2Config, GPT2LMHeadModel

    from alignment.models.language import decoder_branch

    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100))
    with pytest.raises(ModelError, match="not laid out as the decoders this adapter reads"):
        decoder_branch("text", gpt2.base_model, "causal-lm")
