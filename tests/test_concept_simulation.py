"""The simulated Pereira-like concept dataset: stimuli and files the loader reads, the planted
layer recovered out of sample by the concept RSA, the null held at SNR 0, and results blind to
what should not matter (voxel order, feature scale)."""

import hashlib
import json
import os

import numpy as np
import pytest
from scipy.stats import binom

from alignment.analyses import rsa
from alignment.data import load_dataset
from alignment.data.pereira import FILE_PATTERN, PARADIGMS, PereiraDataset, pereira_contents, write_pereira_mat
from alignment.simulation import (CATEGORIES, CONCEPT_NETWORKS, ConceptPlant, build_concept_dataset,
                                  load_concept_ground_truth, plant_concept_responses, write_concept_stimuli)
from alignment.simulation.concepts import PICTURE_SIZE, PICTURES_PER_CONCEPT, SENTENCES_PER_CONCEPT

C, L = 180, 5
SOURCE = "synthetic"
#: network -> (planted layer, paradigms)
PLANTED = {"languageLH": (3, PARADIGMS), "languageRH": (1, ("sentences", "wordclouds")),
           "visual": (2, ("pictures",))}
PLANTING = [ConceptPlant(net, SOURCE, layer, paradigms) for net, (layer, paradigms) in PLANTED.items()]


def synthetic_features(seed=0, categories=None):
    """{(SOURCE, layer): (C, N)} for L layers of different geometries: isotropic; category
    clusters; two neighbouring layers that share half their variance (2 and 3); low rank."""
    rng = np.random.default_rng(seed)
    cats = np.repeat(np.arange(9), 20) if categories is None else categories
    shared = rng.standard_normal((C, 48))
    layers = [
        rng.standard_normal((C, 64)),
        rng.standard_normal((9, 32))[cats] + 0.7 * rng.standard_normal((C, 32)),
        shared + rng.standard_normal((C, 48)),
        shared + rng.standard_normal((C, 48)) + 1.0,  # an offset, as activations have
        rng.standard_normal((C, 4)) @ rng.standard_normal((4, 40)),
    ]
    return {(SOURCE, k): X for k, X in enumerate(layers)}


def layer_rdms(features):
    return np.stack([rsa.rdm(features[(SOURCE, k)]) for k in range(L)])


def subject_rdms(ds, paradigm, network):
    return np.stack([rsa.rdm(ds.responses(s, paradigm, network)) for s in ds.subjects])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("concepts") / "sim"

    def features(stimuli):  # computed from the written stimuli, as a model would be
        return synthetic_features(0, stimuli.category_index())

    build_concept_dataset(root, features, PLANTING, snr=0.3, seed=1)
    return root


# --------------------------------------------------------------------------------------------
# what is written, and what the loader reads of it
# --------------------------------------------------------------------------------------------
def test_loader_reads_the_simulated_dataset(planted):
    ds = load_dataset(planted)
    assert ds.kind == "pereira2018" and ds.sample_unit == "concept"
    assert ds.subjects == ["M01", "M02", "M03", "M04"]
    counts = [ds.n_voxels(s) for s in ds.subjects]
    assert len(set(counts)) == 4 and all(480 <= v <= 720 for v in counts)
    assert ds.networks() == list(CONCEPT_NETWORKS)
    assert ds.concepts == sorted(w for words in CATEGORIES.values() for w in words) and len(ds.concepts) == C
    for s in ds.subjects:
        cols = [ds.network_columns(s, n) for n in CONCEPT_NETWORKS]
        assert len(np.unique(np.concatenate(cols))) == sum(c.size for c in cols) < ds.n_voxels(s)  # disjoint
        for paradigm in PARADIGMS:
            Y = ds.responses(s, paradigm)
            assert Y.shape == (C, ds.n_voxels(s)) and Y.dtype == np.float32
        assert ds.responses(s, "sentences", "visual").shape == (C, cols[2].size)
        meta = ds.meta(s)
        assert len(meta.roi_names[0]) == 3 and meta.col_to_coord.shape == (ds.n_voxels(s), 3)
    assert ds.validate() == []
    truth = load_concept_ground_truth(planted)
    assert truth["snr"] == 0.3 and truth["seed"] == 1
    assert truth["participants"] == dict(zip(ds.subjects, counts))
    assert {(p["network"], p["paradigm"]): p["layer"] for p in truth["planted"]} == \
        {(n, p): layer for n, (layer, ps) in PLANTED.items() for p in ps}
    assert not any(p["network"] == "dmn" for p in truth["planted"])


def test_stimuli(planted):
    ds = load_dataset(planted)
    cats = ds.categories()
    assert sorted(set(cats.values())) == sorted(CATEGORIES) and len(cats) == C
    assert all(sum(c == k for c in cats.values()) == 20 for k in CATEGORIES)
    for word in ("apple", "hammer", "owl"):
        stim = ds.stimuli(word, "sentences")
        assert len(stim["sentences"]) == SENTENCES_PER_CONCEPT
        assert all(word in s.split() or f"{word}." in s.split() for s in stim["sentences"])
        cloud = ds.stimuli(word, "wordclouds")["wordcloud"]
        assert cats[word] in cloud and word not in cloud and len(cloud) >= 5
        refs = ds.stimuli(word, "pictures")["pictures"]
        assert len(refs) == PICTURES_PER_CONCEPT
        assert ds.load_frame(refs[0]).size == (PICTURE_SIZE, PICTURE_SIZE)
    # a concept's pictures vary; the pictures of concepts differ
    pics = {w: [np.asarray(ds.load_frame(r), dtype=float) for r in ds.pictures_of(w)] for w in ("apple", "pear", "bus")}
    assert np.abs(pics["apple"][0] - pics["apple"][1]).mean() > 0
    assert np.abs(pics["apple"][0] - pics["bus"][0]).mean() > np.abs(pics["apple"][0] - pics["apple"][1]).mean() / 4


def _tree_digest(folder):
    h = hashlib.sha256()
    for dirpath, dirnames, files in sorted(os.walk(folder)):
        dirnames.sort()
        for f in sorted(files):
            h.update(os.path.relpath(os.path.join(dirpath, f), folder).encode())
            h.update(open(os.path.join(dirpath, f), "rb").read())
    return h.hexdigest()


def test_stimuli_deterministic(tmp_path):
    a, b, c = (write_concept_stimuli(tmp_path / name, seed) for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert _tree_digest(a.root / "stimuli") == _tree_digest(b.root / "stimuli")
    assert a.sentences.read_text() != c.sentences.read_text()
    assert a.concepts == c.concepts and a.categories == c.categories  # the concepts are fixed


def test_build_is_deterministic_blind_to_feature_scale_and_atomic(tmp_path):
    feats = synthetic_features(0)
    plant = [ConceptPlant("languageLH", SOURCE, 3)]
    kw = dict(snr=0.5, seed=2, n_participants=3, n_voxels=80)
    a = PereiraDataset(build_concept_dataset(tmp_path / "a", feats, plant, **kw))
    b = PereiraDataset(build_concept_dataset(tmp_path / "b", feats, plant, **kw))
    scaled = {k: 10.0 * X for k, X in feats.items()}  # a layer's scale is no part of its geometry
    c = PereiraDataset(build_concept_dataset(tmp_path / "c", scaled, plant, **kw))
    for s in a.subjects:
        for p in PARADIGMS:
            np.testing.assert_array_equal(a.responses(s, p), b.responses(s, p))
            np.testing.assert_allclose(a.responses(s, p), c.responses(s, p), rtol=1e-5, atol=1e-5)
    assert json.loads((tmp_path / "a" / "ground_truth.json").read_text()) == \
        json.loads((tmp_path / "b" / "ground_truth.json").read_text())

    # atomic: a failure leaves neither the dataset nor a temporary folder; the same build is
    # kept, another one replaced, another folder never
    def broken(stimuli):
        raise RuntimeError("feature extraction failed")

    with pytest.raises(RuntimeError, match="feature extraction failed"):
        build_concept_dataset(tmp_path / "e", broken, plant, **kw)
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c"]
    mat = tmp_path / "a" / "M01" / "data_180concepts_pictures.mat"
    written = mat.stat().st_mtime_ns
    build_concept_dataset(tmp_path / "a", feats, plant, **kw)
    assert mat.stat().st_mtime_ns == written
    build_concept_dataset(tmp_path / "a", scaled, plant, **kw)  # other features: rebuilt
    assert mat.stat().st_mtime_ns != written
    assert load_concept_ground_truth(tmp_path / "a")["features_sha256"] != \
        load_concept_ground_truth(tmp_path / "b")["features_sha256"]
    build_concept_dataset(tmp_path / "a", feats, plant, **{**kw, "seed": 3})
    assert load_concept_ground_truth(tmp_path / "a")["seed"] == 3
    d = PereiraDataset(tmp_path / "a")  # another seed, other responses
    assert not np.array_equal(d.responses("M01", "pictures")[:, :10], b.responses("M01", "pictures")[:, :10])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a simulated dataset"):
        build_concept_dataset(tmp_path / "other", feats, plant, **kw, overwrite=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("planting, features, message", [
    ([ConceptPlant("frontal", SOURCE, 1)], None, "unknown network 'frontal'"),
    ([ConceptPlant("visual", SOURCE, 9)], None, r"no \('synthetic', 9\)"),
    ([ConceptPlant("visual", SOURCE, 1, ("movies",))], None, "unknown paradigm 'movies'"),
    ([ConceptPlant("visual", SOURCE, 1), ConceptPlant("visual", SOURCE, 2, ("pictures",))], None,
     "planted twice in paradigm 'pictures'"),
    ([ConceptPlant("visual", SOURCE, 1)], {(SOURCE, 1): np.zeros((179, 4))}, r"\(180, N\) array"),
    ([ConceptPlant("visual", SOURCE, 1)], {"pictures": {(SOURCE, 1): np.zeros((180, 4))}},
     "no entry for paradigm 'sentences'"),
])
def test_bad_planting(tmp_path, planting, features, message):
    write_concept_stimuli(tmp_path)
    with pytest.raises(ValueError, match=message):
        plant_concept_responses(tmp_path, synthetic_features() if features is None else features, planting)


def test_bad_parameters(tmp_path):
    with pytest.raises(ValueError, match="no stimuli"):
        plant_concept_responses(tmp_path, synthetic_features(), PLANTING)
    write_concept_stimuli(tmp_path)
    with pytest.raises(ValueError, match="snr must be"):
        plant_concept_responses(tmp_path, synthetic_features(), PLANTING, snr=-1)
    with pytest.raises(ValueError, match="n_participants must be in 3"):
        plant_concept_responses(tmp_path, synthetic_features(), PLANTING, n_participants=2)
    assert not any(p.startswith("M") for p in os.listdir(tmp_path))


# --------------------------------------------------------------------------------------------
# the planted effect is recovered
# --------------------------------------------------------------------------------------------
def test_planted_layer_is_best_out_of_sample(planted):
    ds = load_dataset(planted)
    M = layer_rdms(synthetic_features(0, np.array([list(CATEGORIES).index(ds.categories()[c])
                                                   for c in ds.concepts])))
    for network in CONCEPT_NETWORKS:
        for paradigm in PARADIGMS:
            R = subject_rdms(ds, paradigm, network)
            best = rsa.best_layer(R, M, split="participants")
            layer, paradigms = PLANTED.get(network, (None, ()))
            if paradigm in paradigms:
                assert best.in_sample_layer == layer and best.modal_layer == layer, (network, paradigm)
                assert np.all(best.chosen == layer) and best.held_out > 0.05
            else:  # unplanted: no layer explains the network
                assert best.in_sample_rho < 0.05, (network, paradigm)
    # the layers × networks table of the pictures paradigm: significant exactly where planted
    group = np.stack([subject_rdms(ds, "pictures", n).mean(axis=0) for n in CONCEPT_NETWORKS])
    table = rsa.layer_network_rsa(group, M, n_perm=200, seed=0)
    expected = np.zeros((L, len(CONCEPT_NETWORKS)), bool)
    expected[3, 0] = expected[2, 2] = True
    # layer 2 shares variance with the planted layer 3 (and back): it may be significant too
    assert np.all(table.reject[expected]) and not np.any(table.reject[[0, 1, 4]][:, [0, 2]])
    assert not np.any(table.reject[:, [1, 3]])


def test_voxel_order_is_irrelevant(planted, tmp_path):
    """Permuting a participant's columns (with its metadata) changes no RDM or RSA result."""
    ds = load_dataset(planted)
    sid = "M02"
    meta = ds.meta(sid)
    perm = np.random.default_rng(7).permutation(meta.n_voxels)
    new_position = np.argsort(perm)  # old column -> new column
    atlases = {name: [np.sort(new_position[c]) + 1 for c in rois]
               for name, rois in zip(meta.atlases, meta.roi_columns)}
    copy = tmp_path / "permuted"
    for s in ds.subjects:
        (copy / s).mkdir(parents=True)
        for p in PARADIGMS:
            target = copy / s / FILE_PATTERN.format(paradigm=p)
            if s == sid:
                write_pereira_mat(target, pereira_contents(ds.responses(s, p)[:, perm], ds.concepts, atlases,
                                                           meta.col_to_coord[perm], meta.dims))
            else:
                os.link(ds.path(s, p), target)
    ds2 = PereiraDataset(copy)
    assert not np.array_equal(ds2.responses(sid, "pictures"), ds.responses(sid, "pictures"))
    M = layer_rdms(synthetic_features(0))
    for network in ("languageLH", "visual"):
        R1, R2 = subject_rdms(ds, "pictures", network), subject_rdms(ds2, "pictures", network)
        np.testing.assert_allclose(R1, R2, atol=1e-6)
        b1, b2 = rsa.best_layer(R1, M), rsa.best_layer(R2, M)
        assert b1.in_sample_layer == b2.in_sample_layer
        np.testing.assert_allclose(b1.held_out_rho, b2.held_out_rho, atol=1e-6)


# --------------------------------------------------------------------------------------------
# no effect at SNR 0
# --------------------------------------------------------------------------------------------
N_NULL_SEEDS = 6
N_PERM_NULL = 100


def test_null_at_snr_zero(planted, tmp_path):
    """At SNR 0 the share of (layer, network) permutation p < .05 is at its level (binomial
    band over seeds, paradigms, networks and layers) and the FDR rejects nothing."""
    M = layer_rdms(synthetic_features(0))
    p_values, families_rejecting = [], 0
    for seed in range(N_NULL_SEEDS):
        root = tmp_path / f"null{seed}"
        root.mkdir()
        os.symlink(planted / "stimuli", root / "stimuli")
        truth = plant_concept_responses(root, synthetic_features(0), PLANTING, snr=0.0, seed=100 + seed,
                                        n_voxels=150)
        assert truth["planted"] == []
        ds = load_dataset(root)
        for paradigm in PARADIGMS:
            group = np.stack([subject_rdms(ds, paradigm, n).mean(axis=0) for n in CONCEPT_NETWORKS])
            for g in group:
                p_values.append(rsa.permutation_test(g, M, n_perm=N_PERM_NULL, seed=seed).p)
        if seed < 2:  # the FDR family of one paradigm, with enough permutations to reject
            table = rsa.layer_network_rsa(group, M, n_perm=500, seed=seed)
            families_rejecting += bool(table.reject.any())
    p = np.concatenate(p_values)
    level = np.floor(0.05 * (N_PERM_NULL + 1)) / (N_PERM_NULL + 1)  # P(p < .05) with a finite null
    lo, hi = binom.interval(0.999, p.size, level)
    assert lo <= np.sum(p < 0.05) <= hi, (np.sum(p < 0.05), p.size)
    assert families_rejecting == 0
