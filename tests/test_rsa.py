"""Concept RSA (alignment.analyses.rsa): values against scipy and rsatoolbox, planted effects
recovered, levels held on null data whose structure is not the tested one, invariances."""

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import pdist

from alignment.analyses import rsa
from alignment.stats import fdr_bh


# --------------------------------------------------------------------------------------------
# simulated concepts
# --------------------------------------------------------------------------------------------
def latent(rng, C, k=6, n_cat=4):
    """(C, k) concept features with category structure."""
    cats = np.arange(C) % n_cat
    return rng.standard_normal((n_cat, k))[cats] + 0.8 * rng.standard_normal((C, k))


def patterns(rng, Z, F=30, snr=1.0, gradient=0.0):
    """(C, F) responses: Z mapped to F units (``snr``: its sd relative to the noise's), plus
    noise that is not the model's: heavy-tailed (t, 3 dof), correlated across units, and
    (``gradient``) a concept-frequency gradient along one shared pattern, structure that no
    model RDM here has."""
    C = Z.shape[0]
    mixing = np.eye(F) + 0.5 * rng.standard_normal((F, F)) / np.sqrt(F)
    noise = rng.standard_t(3, size=(C, F)) @ mixing
    out = noise / noise.std()
    if snr > 0:
        signal = Z @ rng.standard_normal((Z.shape[1], F))
        out += snr * signal / signal.std()
    if gradient:
        freq = np.log(rng.zipf(1.6, size=C).clip(max=1000))  # a skewed frequency per concept
        out += gradient * freq[:, None] * (1.0 + rng.standard_normal(F))
    return out


def null_pair(rng, C, metric="cosine"):
    """A brain RDM and a model RDM, each structured, with no shared structure."""
    brain = rsa.rdm(patterns(rng, latent(rng, C), snr=1.0, gradient=1.0), metric)
    # the model's categories are its own: a random relabelling of the concepts
    model = rsa.rdm(latent(rng, C)[rng.permutation(C)] @ rng.standard_normal((6, 20)), metric)
    return brain, model


# --------------------------------------------------------------------------------------------
# values against references
# --------------------------------------------------------------------------------------------
def test_rdm_metrics_match_references():
    import rsatoolbox

    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 7)) + 1.0
    cos = 1 - (X / np.linalg.norm(X, axis=1, keepdims=True)) @ (X / np.linalg.norm(X, axis=1, keepdims=True)).T
    np.testing.assert_allclose(rsa.rdm(X), cos[np.triu_indices(12, 1)], atol=1e-12)
    np.testing.assert_allclose(rsa.rdm(X, "correlation"), 1 - np.corrcoef(X)[np.triu_indices(12, 1)], atol=1e-12)
    np.testing.assert_allclose(rsa.rdm(X, "euclidean"), pdist(X), atol=1e-12)
    ref = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(X), method="correlation").dissimilarities[0]
    np.testing.assert_allclose(rsa.rdm(X, "correlation"), ref, atol=1e-10)
    np.testing.assert_allclose(rsa.square(rsa.rdm(X))[3, 5], cos[3, 5])
    assert rsa.n_concepts(66) == 12


def test_spearman_equals_scipy_and_rsatoolbox():
    from rsatoolbox.rdm import RDMs, compare_spearman

    rng = np.random.default_rng(1)
    C = 25
    a = rsa.rdm(rng.standard_normal((C, 5)))
    B = np.stack([rsa.rdm(rng.standard_normal((C, 4))) for _ in range(3)] + [np.round(a * 3) / 3])  # ties
    rho = rsa.spearman(a, B)
    for b, r in zip(B, rho):
        assert r == pytest.approx(sps.spearmanr(a, b)[0], abs=1e-12)
        assert r == pytest.approx(compare_spearman(RDMs(a[None]), RDMs(b[None]))[0, 0], abs=1e-12)
    assert isinstance(rsa.spearman(a, B[0]), float)
    # the permutation test and the bootstrap report the same value
    assert rsa.permutation_test(a, B, n_perm=9).rho == pytest.approx(rho, abs=1e-12)
    assert rsa.bootstrap_concepts(a, B, n_boot=5).estimate == pytest.approx(rho, abs=1e-12)


def _partial_reference(x, y, z):
    """Pearson r of the residuals of rank(x) and rank(y) after regression on [1, rank(z)]."""
    design = np.column_stack([np.ones(len(z)), sps.rankdata(z)])
    res = [r - design @ np.linalg.lstsq(design, r, rcond=None)[0] for r in (sps.rankdata(x), sps.rankdata(y))]
    return np.corrcoef(*res)[0, 1]


def test_resampling_kernels_equal_explicit_recomputation():
    """The permutation null and the concept bootstrap avoid re-ranking; each draw must equal
    scipy's Spearman (or the partial ρ) recomputed on the relabelled / resampled pairs."""
    rng = np.random.default_rng(14)
    C = 15
    brain = np.round(rsa.rdm(rng.standard_normal((C, 4))), 1)  # ties
    models = np.stack([rsa.rdm(rng.standard_normal((C, 4))), np.round(rsa.rdm(rng.standard_normal((C, 3))), 1)])
    control = rsa.rdm(rng.standard_normal((C, 3)))
    iu, ju = np.triu_indices(C, 1)
    res = rsa.permutation_test(brain, models, n_perm=15, seed=5)
    perms = np.argsort(np.random.default_rng(5).random((15, C)), axis=1)
    for perm, null in zip(perms, res.null):
        relabelled = rsa.square(brain)[perm][:, perm][iu, ju]
        assert null == pytest.approx([sps.spearmanr(relabelled, m)[0] for m in models], abs=1e-12)
    bsq, msq, csq = rsa.square(brain), [rsa.square(m) for m in models], rsa.square(control)
    for ctrl in (None, control):
        boot = rsa.bootstrap_concepts(brain, models, n_boot=15, seed=6, control=ctrl)
        draw_rng = np.random.default_rng(6)
        for draw in boot.draws:
            idx = draw_rng.integers(0, C, C)
            i, j = idx[iu], idx[ju]
            i, j = i[i != j], j[i != j]  # the self-pairs of a concept drawn twice are left out
            if ctrl is None:
                expected = [sps.spearmanr(bsq[i, j], m[i, j])[0] for m in msq]
            else:
                expected = [_partial_reference(bsq[i, j], m[i, j], csq[i, j]) for m in msq]
            assert draw == pytest.approx(expected, abs=1e-10)


def test_noise_ceiling_equals_rsatoolbox():
    from rsatoolbox.inference import boot_noise_ceiling
    from rsatoolbox.rdm import RDMs

    rng = np.random.default_rng(2)
    Z = latent(rng, 20)
    R = np.stack([rsa.rdm(patterns(rng, Z, snr=0.7)) for _ in range(6)])
    nc = rsa.noise_ceiling(R, pool="rank")
    lo, hi = boot_noise_ceiling(RDMs(R), method="spearman")
    assert (nc.lower, nc.upper) == pytest.approx((lo, hi), abs=1e-12)
    # the true RDM's mean score over participants lies between the bounds (mean pooling too)
    true = rsa.rdm(Z @ rng.standard_normal((6, 30)))
    nc = rsa.noise_ceiling(R)
    score = np.mean(rsa.spearman(true, R))
    assert nc.lower < nc.upper
    assert nc.lower - 0.05 < score < nc.upper


def test_partial_equals_regression_residuals():
    rng = np.random.default_rng(3)
    C = 20
    Z = latent(rng, C)
    brain = rsa.rdm(patterns(rng, Z))
    control = rsa.rdm(Z @ rng.standard_normal((6, 9)))
    model = rsa.rdm(Z @ rng.standard_normal((6, 9)) + rng.standard_normal((C, 9)))
    rb, rm, rc = (sps.rankdata(x) for x in (brain, model, control))
    design = np.column_stack([np.ones_like(rc), rc])
    res_b = rb - design @ np.linalg.lstsq(design, rb, rcond=None)[0]
    res_m = rm - design @ np.linalg.lstsq(design, rm, rcond=None)[0]
    expected = np.corrcoef(res_b, res_m)[0, 1]
    assert rsa.partial_spearman(brain, model, control) == pytest.approx(expected, abs=1e-12)
    r_bm, r_bc, r_mc = sps.spearmanr(brain, model)[0], sps.spearmanr(brain, control)[0], sps.spearmanr(model, control)[0]
    formula = (r_bm - r_bc * r_mc) / np.sqrt((1 - r_bc ** 2) * (1 - r_mc ** 2))
    assert rsa.partial_spearman(brain, model, control) == pytest.approx(formula, abs=1e-12)
    # two controls at once: regression on both
    control2 = np.stack([control, rsa.rdm(rng.standard_normal((C, 3)))])
    design = np.column_stack([np.ones_like(rc), sps.rankdata(control2, axis=1).T])
    res_b = rb - design @ np.linalg.lstsq(design, rb, rcond=None)[0]
    res_m = rm - design @ np.linalg.lstsq(design, rm, rcond=None)[0]
    assert rsa.partial_spearman(brain, model, control2) == pytest.approx(np.corrcoef(res_b, res_m)[0, 1], abs=1e-12)


def test_layer_network_fdr_is_alignment_stats():
    rng = np.random.default_rng(4)
    C = 16
    Z = latent(rng, C)
    brains = np.stack([rsa.rdm(patterns(rng, Z, snr=s)) for s in (2.0, 0.0)])
    layers = np.stack([rsa.rdm(Z @ rng.standard_normal((6, 10)) + w * rng.standard_normal((C, 10)))
                       for w in (0.2, 1.0, 5.0)])
    out = rsa.layer_network_rsa(brains, layers, n_perm=299)
    assert out.rho.shape == out.p.shape == out.q.shape == (3, 2)
    np.testing.assert_allclose(out.q, fdr_bh(out.p)[1])
    np.testing.assert_allclose(out.q.ravel(), sps.false_discovery_control(out.p.ravel()))
    np.testing.assert_allclose(out.rho[:, 0], rsa.spearman(brains[0], layers))
    assert out.reject[0, 0] and not out.reject[:, 1].any()


# --------------------------------------------------------------------------------------------
# planted effects recovered
# --------------------------------------------------------------------------------------------
def test_planted_rsa_detected_with_cis_excluding_zero():
    rng = np.random.default_rng(5)
    C, S = 30, 8
    Z = latent(rng, C)
    subject_rdms = np.stack([rsa.rdm(patterns(rng, Z, snr=0.6, gradient=0.5)) for _ in range(S)])
    model = rsa.rdm(Z @ rng.standard_normal((6, 12)))
    group = rsa.group_rdm(subject_rdms)
    res = rsa.permutation_test(group, model, n_perm=999)
    assert res.p[0] < 0.01 and res.rho[0] > 0.2
    ci_c = rsa.bootstrap_concepts(group, model, n_boot=300)
    ci_s = rsa.bootstrap_participants(subject_rdms, model, n_boot=300)
    assert 0 < ci_c.low[0] <= res.rho[0] <= ci_c.high[0]
    assert 0 < ci_s.low[0] <= res.rho[0] <= ci_s.high[0]


def test_planted_best_layer_recovered_out_of_sample():
    rng = np.random.default_rng(6)
    C, S, L, planted = 40, 6, 7, 4
    Z = latent(rng, C)
    # layer l mixes the brain's features with its own, most of the brain's at the planted layer
    weights = np.exp(-0.5 * (np.arange(L) - planted) ** 2)
    layers = np.stack([rsa.rdm(w * Z @ rng.standard_normal((6, 16)) + (1.2 - w) * rng.standard_normal((C, 16)))
                       for w in weights])
    subject_rdms = np.stack([rsa.rdm(patterns(rng, Z, snr=0.8)) for _ in range(S)])
    for split in ("participants", "concepts"):
        out = rsa.best_layer(subject_rdms, layers, split=split, n_splits=40)
        assert out.modal_layer == planted and out.in_sample_layer == planted, split
        assert out.held_out > 0.1
    # concept splits hold out concepts, not participants: the held-out value keeps the group's scale
    out = rsa.best_layer(subject_rdms, layers, split="concepts", n_splits=40)
    assert abs(out.held_out - out.in_sample_rho) < 0.15


def test_model_difference_detects_a_better_model():
    rng = np.random.default_rng(7)
    C, S = 40, 8
    Z = latent(rng, C)
    subject_rdms = np.stack([rsa.rdm(patterns(rng, Z, snr=0.8)) for _ in range(S)])
    good = rsa.rdm(Z @ rng.standard_normal((6, 12)))
    poor = rsa.rdm(Z @ rng.standard_normal((6, 12)) + 5.0 * rng.standard_normal((C, 12)))
    boot = rsa.compare_models(rsa.group_rdm(subject_rdms), good, poor, n_boot=1000)
    assert boot.delta > 0 and boot.low > 0 and boot.p < 0.05
    flips = rsa.compare_models(subject_rdms, good, poor, method="participants")
    assert flips.delta > 0 and flips.p <= 2 / 2 ** S + 1e-12  # every participant agrees


# --------------------------------------------------------------------------------------------
# levels held on null data (structure in each RDM, none shared)
# --------------------------------------------------------------------------------------------
def test_concept_bootstrap_ci_covers_the_population_value():
    # concepts drawn from a population (categories, heavy-tailed voxel noise); the population ρ
    # from a draw of 1200 concepts; 95 % intervals from 40 concepts must cover it at least 90 %
    rng = np.random.default_rng(15)
    W, Wm, means = rng.standard_normal((6, 40)), rng.standard_normal((6, 12)), rng.standard_normal((4, 6))

    def world(C):
        Z = means[rng.integers(0, 4, C)] + 0.8 * rng.standard_normal((C, 6))
        return (rsa.rdm(Z @ W + 2.0 * rng.standard_t(3, size=(C, 40))),
                rsa.rdm(Z @ Wm + rng.standard_normal((C, 12))))

    truth = rsa.spearman(*world(1200))
    cover = []
    for s in range(100):
        ci = rsa.bootstrap_concepts(*world(40), n_boot=200, seed=s)
        cover.append(ci.low[0] <= truth <= ci.high[0])
    assert 0.9 <= np.mean(cover) <= 1.0, np.mean(cover)


def test_permutation_p_calibrated_on_structured_null():
    rng = np.random.default_rng(8)
    n_sims, C = 1000, 16
    p_perm, p_pairs = [], []
    for _ in range(n_sims):
        brain, model = null_pair(rng, C)
        p_perm.append(rsa.permutation_test(brain, model, n_perm=199, seed=int(rng.integers(1 << 31))).p[0])
        rho, p = sps.spearmanr(brain, model)
        p_pairs.append(p / 2 if rho > 0 else 1 - p / 2)  # one-sided, pairs taken as independent
    share = np.mean(np.array(p_perm) < 0.05)
    assert 0.03 <= share <= 0.07, share
    # the p value that treats the P pairs as independent (the study's) is far too small here
    assert np.mean(np.array(p_pairs) < 0.05) > 0.075


def test_model_difference_holds_level_when_equally_good():
    # bootstrap over concepts: two models with the same signal and the same amount of their own
    # noise, equally good in expectation over concepts
    rng = np.random.default_rng(9)
    n_sims, C, S = 200, 20, 6
    p_boot = []
    for _ in range(n_sims):
        Z = latent(rng, C)
        group = rsa.group_rdm([rsa.rdm(patterns(rng, Z, snr=0.7, gradient=0.5)) for _ in range(S)])
        a, b = (rsa.rdm(Z @ rng.standard_normal((6, 10)) + 1.5 * rng.standard_normal((C, 10))) for _ in range(2))
        p_boot.append(rsa.compare_models(group, a, b, n_boot=150, seed=int(rng.integers(1 << 31))).p)
    assert np.mean(np.array(p_boot) < 0.05) <= 0.07


def test_participant_sign_flips_hold_level():
    # sign flips over participants: the two fixed models are equally good for every participant
    # in distribution (each brain has structure of its own, in no relation to either model). The
    # test conditions on the concepts: with structure shared by all brains, two models that are
    # equally good only on average over concepts differ on these concepts, and it says so.
    rng = np.random.default_rng(13)
    n_sims, C, S = 300, 16, 8
    p_flip = []
    for _ in range(n_sims):
        a, b = (rsa.rdm(latent(rng, C)[rng.permutation(C)]) for _ in range(2))
        subject_rdms = np.stack([rsa.rdm(patterns(rng, latent(rng, C)[rng.permutation(C)], snr=1.0,
                                                  gradient=1.0)) for _ in range(S)])
        p_flip.append(rsa.compare_models(subject_rdms, a, b, method="participants").p)
    assert 0.02 <= np.mean(np.array(p_flip) < 0.05) <= 0.07


def test_null_best_layer_in_sample_value_is_optimistic():
    rng = np.random.default_rng(10)
    in_sample, held = [], []
    for _ in range(40):
        C, S, L = 20, 4, 8
        subject_rdms = np.stack([rsa.rdm(patterns(rng, latent(rng, C), snr=0.0, gradient=1.0)) for _ in range(S)])
        layers = np.stack([rsa.rdm(latent(rng, C)) for _ in range(L)])
        out = rsa.best_layer(subject_rdms, layers, split="concepts", n_splits=10, seed=int(rng.integers(1 << 31)))
        in_sample.append(out.in_sample_rho)
        held.append(out.held_out)
    # the maximum of 8 null correlations is biased up; the held-out value of the chosen one is not
    assert np.mean(in_sample) > 0.05
    assert abs(np.mean(held)) < 0.5 * np.mean(in_sample)
    assert abs(np.mean(held)) < 2.5 * np.std(held) / np.sqrt(len(held))


def test_partial_removes_what_the_control_explains():
    rng = np.random.default_rng(11)
    plain, partial = [], []
    for _ in range(30):
        C = 20
        Zc = latent(rng, C)
        brain = rsa.rdm(patterns(rng, Zc, snr=1.0))
        control = rsa.rdm(Zc @ rng.standard_normal((6, 10)))
        # the model sees only what the control sees, plus its own noise
        model = rsa.rdm(Zc @ rng.standard_normal((6, 10)) + 0.8 * rng.standard_normal((C, 10)))
        plain.append(rsa.spearman(brain, model))
        partial.append(rsa.partial_spearman(brain, model, control))
    assert np.mean(plain) > 0.2
    assert abs(np.mean(partial)) < 0.5 * np.mean(plain)


# --------------------------------------------------------------------------------------------
# blind to what should not matter
# --------------------------------------------------------------------------------------------
def test_blind_to_concept_order_and_feature_transforms():
    rng = np.random.default_rng(12)
    C = 18
    Z = latent(rng, C)
    subjects = [patterns(rng, Z) for _ in range(4)]
    features = Z @ rng.standard_normal((6, 11))
    R = np.stack([rsa.rdm(X) for X in subjects])
    model = rsa.rdm(features)
    order = rng.permutation(C)
    R_perm = np.stack([rsa.rdm(X[order]) for X in subjects])
    model_perm = rsa.rdm(features[order])
    assert rsa.spearman(R_perm.mean(0), model_perm) == pytest.approx(rsa.spearman(R.mean(0), model), abs=1e-12)
    assert rsa.noise_ceiling(R_perm).lower == pytest.approx(rsa.noise_ceiling(R).lower, abs=1e-12)
    assert rsa.partial_spearman(R_perm[0], model_perm, R_perm[1]) == \
        pytest.approx(rsa.partial_spearman(R[0], model, R[1]), abs=1e-12)
    # permutation p: the same null distribution, so p agrees up to Monte Carlo error
    p0 = rsa.permutation_test(R.mean(0), model, n_perm=2000).p[0]
    p1 = rsa.permutation_test(R_perm.mean(0), model_perm, n_perm=2000, seed=1).p[0]
    assert abs(p0 - p1) < 0.03
    # cosine: rotation of the feature space and a positive scale per concept change nothing
    Q, _ = np.linalg.qr(rng.standard_normal((11, 11)))
    scale = rng.uniform(0.1, 10, size=(C, 1))
    np.testing.assert_allclose(rsa.rdm(scale * features @ Q), model, atol=1e-10)
    # correlation: an offset and a scale per concept; Euclidean: rotation and translation
    np.testing.assert_allclose(rsa.rdm(scale * features + rng.standard_normal((C, 1)), "correlation"),
                               rsa.rdm(features, "correlation"), atol=1e-10)
    np.testing.assert_allclose(rsa.rdm(features @ Q + rng.standard_normal(11), "euclidean"),
                               rsa.rdm(features, "euclidean"), atol=1e-10)
    # Spearman: any increasing transform of either RDM
    assert rsa.spearman(np.log1p(R[0]), model ** 3) == pytest.approx(rsa.spearman(R[0], model), abs=1e-12)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
def test_bad_input_messages():
    with pytest.raises(ValueError, match="unknown RDM metric 'manhattan'"):
        rsa.rdm(np.ones((4, 2)), "manhattan")
    with pytest.raises(ValueError, match="all-zero pattern"):
        rsa.rdm(np.vstack([np.zeros(3), np.ones((3, 3))]))
    with pytest.raises(ValueError, match="NaN"):
        rsa.rdm(np.full((4, 2), np.nan))
    with pytest.raises(ValueError, match="not the length of a condensed RDM"):
        rsa.spearman(np.ones(7), np.ones(7))
    with pytest.raises(ValueError, match="differ in length"):
        rsa.permutation_test(np.arange(6.0), np.arange(10.0))
    with pytest.raises(ValueError, match="n_folds"):
        rsa.best_layer(np.random.rand(3, 6), np.random.rand(2, 6), n_folds=5)
    with pytest.raises(ValueError, match="method='participants'"):
        rsa.compare_models(np.random.rand(3, 6), np.random.rand(6), np.random.rand(6))
