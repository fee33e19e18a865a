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


# --------------------------------------------------------------------------------------------
# the stages
# --------------------------------------------------------------------------------------------
from alignment.keys import BrainRDMKey, ConceptFeatureKey, ModelRDMKey, RSACompareKey, RSAKey  # noqa: E402
from alignment.pipeline import NotCached, Study  # noqa: E402

CONTROL = "random:roberta:tiny"
SMALL = dict(n_perm=199, n_boot=40)


@pytest.fixture(scope="module")
def study(concept_ds, tmp_path_factory):
    return Study(concept_ds, tmp_path_factory.mktemp("cache"), device="cpu")


def _layer_rdms(entry, branch, metric="cosine"):
    layers = entry.meta["branches"][branch]
    return np.stack([rsa.rdm(entry[f"{branch}.L{layer:02d}"], metric) for layer in layers])


def test_rsa_stage_equals_direct_computation(study, concept_ds):
    key = RSAKey(TEXT_MODEL, "text", "sentences", control=CONTROL, **SMALL)
    res = study.get("rsa", key)
    feats = study.get("concept_ans", key.features)
    direct = concept_features(load_model(TEXT_MODEL), concept_ds, "sentences")
    np.testing.assert_allclose(feats["text.L02"], direct[("text", 2)], rtol=1e-5, atol=1e-6)
    M = _layer_rdms(feats, "text")
    networks, subjects = res.meta["networks"], res.meta["subjects"]
    assert networks == ["languageLH", "visual"] and subjects == ["M01", "M02", "M03"]
    assert res.meta["layer_names"] == ["emb", "L1", "L2", "L3"]
    R = {n: np.stack([rsa.rdm(concept_ds.responses(s, "sentences", n)) for s in subjects]) for n in networks}
    G = np.stack([R[n].mean(axis=0) for n in networks])
    table = rsa.layer_network_rsa(G, M, n_perm=199, seed=0)
    np.testing.assert_allclose(res["rho"], table.rho)
    np.testing.assert_allclose(res["p"], table.p)
    np.testing.assert_allclose(res["q"], table.q)
    C = _layer_rdms(study.get("concept_ans", ConceptFeatureKey(CONTROL, "sentences")), "text")
    for j, n in enumerate(networks):
        boot = rsa.bootstrap_concepts(G[j], M, n_boot=40, seed=0)
        np.testing.assert_allclose(res["ci_concepts"][:, :, j], [boot.low, boot.high])
        boot = rsa.bootstrap_participants(R[n], M, n_boot=40, seed=0)
        np.testing.assert_allclose(res["ci_participants"][:, :, j], [boot.low, boot.high])
        ceiling = rsa.noise_ceiling(R[n])
        np.testing.assert_allclose(res["ceiling"][:, j], [ceiling.lower, ceiling.upper])
        best = rsa.best_layer(R[n], M, seed=0)
        assert res["best_in_sample"][j] == best.in_sample_layer
        assert res["best_held_out"][j] == best.modal_layer
        np.testing.assert_allclose(res["best_held_out_rho"][j], best.held_out)
        k = int(np.argmax(rsa.spearman(G[j], C)))
        assert res["control_layer"][j] == k
        np.testing.assert_allclose(res["partial_rho"][:, j], rsa.partial_spearman(G[j], M, C[k]))
        np.testing.assert_allclose(res["rho_subjects"][:, 1, j], [rsa.spearman(r, M[1]) for r in R[n]])


def test_model_difference_stage_equals_compare_models(study, concept_ds):
    a = RSAKey(TEXT_MODEL, "text", "sentences", **SMALL)
    b = RSAKey(VLM, "text", "sentences", **SMALL)
    out = study.get("rsa_compare", RSACompareKey((a, b)))
    ra, rb = study.get("rsa", a), study.get("rsa", b)
    for j, n in enumerate(out.meta["networks"]):
        g = np.mean([study.get("brain_rdm", BrainRDMKey("sentences", n), s)["rdm"] for s in ra.meta["subjects"]], axis=0)
        la, lb = int(ra["best_held_out"][j]), int(rb["best_held_out"][j])
        assert out["layer_a"][0, j] == la and out["layer_b"][0, j] == lb
        diff = rsa.compare_models(g, study.get("model_rdm", ModelRDMKey(a.features, "text", la))["rdm"],
                                  study.get("model_rdm", ModelRDMKey(b.features, "text", lb))["rdm"], n_boot=40)
        np.testing.assert_allclose([out["delta"][0, j], out["p"][0, j]], [diff.delta, diff.p])
    from alignment.stats import fdr_bh

    np.testing.assert_allclose(out["q"], fdr_bh(out["p"])[1])


def test_cached_units_are_read_not_recomputed(study, monkeypatch):
    key = RSAKey(TEXT_MODEL, "text", "sentences", control=CONTROL, **SMALL)
    first = study.get("rsa", key)

    def boom(*args, **kwargs):
        raise AssertionError("recomputed")

    import alignment.analyses.rsa as rsa_module
    import alignment.concepts as concepts_module

    monkeypatch.setattr(concepts_module, "concept_features", boom)
    monkeypatch.setattr(rsa_module, "layer_network_rsa", boom)
    monkeypatch.setattr(rsa_module, "rdm", boom)
    again = Study(study.dataset, study.cache, read_only=True).get("rsa", key)
    assert again.key == first.key
    np.testing.assert_array_equal(again["rho"], first["rho"])
    # another statistic setting is another result, not a stale one
    with pytest.raises(NotCached):
        Study(study.dataset, study.cache, read_only=True).get("rsa", RSAKey(TEXT_MODEL, "text", "sentences",
                                                                             n_perm=99, n_boot=40))


def test_stage_bad_input_is_one_line(study, concept_ds):
    bad = [
        (RSAKey(TEXT_MODEL, "image", "sentences", **SMALL), "has no branch 'image'"),
        (RSAKey(TEXT_MODEL, "text", "sentences", networks=("auditory",), **SMALL), "unknown networks"),
        (RSAKey(TEXT_MODEL, "text", "sentences", subjects=("M01",), **SMALL), "at least 2 participants"),
        (RSAKey(TEXT_MODEL, "text", "sentences", split="runs", **SMALL), "split must be"),
        (RSAKey(VLM, "image", "sentences", **SMALL), "RDM is constant"),
    ]
    for key, message in bad:
        with pytest.raises(ValueError, match=message) as err:
            study.get("rsa", key)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown RDM metric"):
        study.get("brain_rdm", BrainRDMKey("sentences", "visual", "manhattan"), "M01")
    # nothing half-written: the failed unit is not in the cache
    assert not study.has("brain_rdm", BrainRDMKey("sentences", "visual", "manhattan"), "M01")


def test_a_time_series_dataset_is_refused(tmp_path):
    class Movie:
        name, sample_unit, subjects = "movie", "tr", ["1"]

        def fingerprint(self, **kw):
            return "x"

    with pytest.raises(ValueError, match="concept-wise dataset"):
        Study(Movie(), tmp_path).get("rsa", RSAKey(TEXT_MODEL, "text", "sentences"))


def test_stage_recovers_a_planted_layer_and_stays_quiet_without_it(tmp_path):
    """Brains that carry a model layer's geometry (its features through a random mixing, plus
    noise) give that model a large, significant ρ whose CIs exclude 0; brains of pure noise
    give nothing significant after FDR."""
    probe = make_concept_dataset(tmp_path / "probe")
    X = concept_features(load_model(TEXT_MODEL), probe, "sentences")[("text", 2)]
    X = (X - X.mean(axis=0)) / X.std(axis=0)

    def planted(rng):
        return X @ rng.standard_normal((X.shape[1], 20)) / 8 + 0.3 * rng.standard_normal((X.shape[0], 20))

    key = RSAKey(TEXT_MODEL, "text", "sentences", n_perm=499, n_boot=100)
    ds = make_concept_dataset(tmp_path / "planted", responses=planted)
    res = Study(ds, tmp_path / "cache").get("rsa", key)
    assert np.all(res["rho"][2] > 0.5) and np.all(res["q"][2] < 0.05)
    assert np.all(res["ci_concepts"][0, 2] > 0) and np.all(res["ci_participants"][0, 2] > 0)
    null = make_concept_dataset(tmp_path / "null", seed=1, responses=lambda rng: rng.standard_normal((12, 20)))
    res = Study(null, tmp_path / "cache").get("rsa", key)
    assert np.all(res["q"] > 0.05)


@pytest.mark.slow  # ~30 s: builds the simulated dataset and extracts 720 sentences
def test_stages_on_the_simulated_concept_dataset(tmp_path):
    """The simulated Pereira-like dataset, its language network planted from a tiny model's
    layer: that network's ρ is significant after FDR, an unplanted network's is not. (Which
    layer wins is not asserted: a random-weight model's adjacent layers barely differ.)"""
    from alignment.data import load_dataset
    from alignment.simulation import ConceptPlant, build_concept_dataset

    rng = np.random.default_rng(0)
    small = dict(n_participants=3, n_voxels=200, seed=0)
    probe = load_dataset(build_concept_dataset(tmp_path / "probe", {("dummy", 0): rng.standard_normal((180, 8))},
                                               [ConceptPlant("dmn", "dummy", 0)], **small))
    feats = concept_features(load_model(TEXT_MODEL), probe, "sentences")
    planted = {("bert", layer): feats[("text", layer)] for layer in range(4)}
    root = build_concept_dataset(tmp_path / "sim", planted, [ConceptPlant("languageLH", "bert", 1, ("sentences",))],
                                 snr=1.0, **small)
    res = Study(load_dataset(root), tmp_path / "cache", device="cpu").get(
        "rsa", RSAKey(TEXT_MODEL, "text", "sentences", networks=("languageLH", "visual"), n_perm=199, n_boot=50))
    assert np.all(res["q"][:, 0] < 0.05) and np.all(res["rho"][:, 0] > 0.3)
    assert np.all(res["q"][:, 1] > 0.05)
