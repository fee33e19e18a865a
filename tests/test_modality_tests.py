"""Tested modality contrasts and group inference (DESIGN §5.5 and "Group level").

Simulated stimulus features as in ``test_integration.py``: an image stream (X_img), a text
stream (X_txt) and their conjunctions X_img[:, k] * X_txt[:, k]. A *fusion layer* carries all
three when it sees image+text; shown the image alone its text-side units face an empty caption
and follow the image through cross-attention (plus variation of their own), and its
conjunctions are the image times those, and vice versa.
Additive voxels sum an image- and a text-driven response (gain > 0, not unified); interactive
voxels also follow a conjunction (unified). Noise is not what the block test's variance
assumes: 1/f (long memory) or AR(1) φ = 0.5 + AR(1) φ = 0.9.
"""

import numpy as np
from synthetic_noise import ar1 as _ar1, noise as _noise
import pytest
from scipy import stats

from alignment.analyses.group import an_coupling, coupling_group, group_contrast
from alignment.analyses.modality import (beyond_single_modalities, crossmodal_tests, paired_contrast,
                                         unified_by_test, unique_variance_tests)
from alignment.encoding import fit_banded_ridge, fit_ridge
from alignment.stats import fdr_bh
from test_pipeline import SPEC, planted  # noqa: F401 - the planted dataset fixture

ALPHAS = np.logspace(-1, 4, 8)
N_RUNS, RUN_LEN, N_FEAT = 4, 150, 8


def _z(x):
    return (x - x.mean(0)) / x.std(0)


def _unit(a):
    return a / a.std(0)


def _world(seed):
    """rng, runs (T,), x_img, x_txt (T, 8), conjunctions (T, 4), and the fusion layer's
    features under each condition {condition: (T, 28)}."""
    rng = np.random.default_rng(seed)
    T = N_RUNS * RUN_LEN
    runs = np.repeat(np.arange(N_RUNS), RUN_LEN)
    x_img, x_txt, e_t, e_i = (_z(_ar1(rng, (T, N_FEAT), 0.7)) for _ in range(4))
    conj = _z(x_img[:, :4] * x_txt[:, :4])
    # a fused layer's text-side units facing an empty caption follow the image through
    # cross-attention (and vice versa), with some variation of their own
    blank_t = _z(x_img @ rng.standard_normal((N_FEAT, N_FEAT)) + 0.5 * e_t)
    blank_i = _z(x_txt @ rng.standard_normal((N_FEAT, N_FEAT)) + 0.5 * e_i)
    layer = {"image+text": np.hstack([x_img, x_txt, conj]),
             "image": np.hstack([x_img, blank_t, _z(x_img[:, :4] * blank_t[:, :4])]),
             "text": np.hstack([blank_i, x_txt, _z(blank_i[:, :4] * x_txt[:, :4])])}
    return rng, runs, x_img, x_txt, conj, layer


def _ridge(X, Y, runs):
    return fit_ridge(X, Y, runs, ALPHAS, return_predictions=True).predictions


def _banded(Xs, Y, runs):
    return fit_banded_ridge(Xs, Y, runs, ALPHAS, n_iter=5, compute_unique=False, return_predictions=True).predictions


#: voxels of each kind in :func:`_additive_then_interactive`
N_VOXELS = 150


def _additive_then_interactive(rng, runs, x_img, x_txt, conj, noise):
    """BOLD (T, 2 N_VOXELS): additive voxels (an image and a text response, the image's share of
    the signal from 0.15 to 0.85), then interactive ones (the same plus a conjunction)."""
    V = N_VOXELS
    mix = np.linspace(0.15, 0.85, V)
    img = _unit(x_img @ rng.standard_normal((N_FEAT, V)))
    txt = _unit(x_txt @ rng.standard_normal((N_FEAT, V)))
    additive = _unit(np.sqrt(mix) * img + np.sqrt(1 - mix) * txt)
    inter = _unit(_unit(x_img @ rng.standard_normal((N_FEAT, V)) + x_txt @ rng.standard_normal((N_FEAT, V)))
                  + _unit(conj @ rng.standard_normal((4, V))))
    signal = np.hstack([additive, inter])
    return 0.8 * signal + _noise(rng, noise, signal.shape, runs)


def _crossmodal_predictions(Y, runs, layer) -> tuple:
    """The held-out predictions the crossmodal stage tests: image+text, image, text, full, additive."""
    preds = {c: _ridge(X, Y, runs) for c, X in layer.items()}
    beyond = beyond_single_modalities(layer["image+text"], layer["image"], layer["text"], runs)
    full = _banded([beyond, layer["image"], layer["text"]], Y, runs)
    additive = _banded([layer["image"], layer["text"]], Y, runs)
    return preds["image+text"], preds["image"], preds["text"], full, additive


def _crossmodal(Y, runs, layer):
    """The crossmodal stage's computation on arrays."""
    return crossmodal_tests(Y, *_crossmodal_predictions(Y, runs, layer), runs, block_len=20)


# ------------------------------------------------------------------------------ unified / gain
@pytest.mark.parametrize("noise", ["1/f", "ar1+ar0.9"])
def test_additive_voxels_have_gain_but_are_not_unified_interactive_ones_are(noise):
    """Additive voxels, with any mix of image and text: gain > 0 is found (both modalities
    predict more than one), unified at <= 5 %; voxels that also follow a conjunction are unified."""
    rng, runs, x_img, x_txt, conj, layer = _world(1)
    Y = _additive_then_interactive(rng, runs, x_img, x_txt, conj, noise)
    V = N_VOXELS
    res = _crossmodal(Y, runs, layer)
    q_unified = fdr_bh(res.p_unified)[1]
    unified = unified_by_test(q_unified, res.dz_unified, np.ones(2 * V, bool))
    # level, whatever the mix (thirds of the image share)
    for part in np.array_split(np.arange(V), 3):
        assert unified[part].mean() <= 0.05
    assert (res.p_unified[:V] < 0.05).mean() <= 0.08  # uncorrected, 150 voxels (binomial sd ~2 %)
    # the full model's extra band reaches what the additive one lacks: at additive voxels it costs
    # (with the image+text ANs as they are: +0.006 to +0.009 here, p < .05 at 6 %)
    assert res.dz_unified[:V].mean() < 0
    # gain > 0 is real at additive voxels: the gain test finds it, so it cannot define "unified"
    assert (res.p_gain[:V] < 0.05).mean() > 0.5
    assert res.gain[:V].mean() > 0
    # recovery
    assert unified[V:].mean() >= 0.5
    assert res.dz_unified[V:].mean() > 0.1 > res.dz_unified[:V].mean()


def test_beyond_single_modalities_is_a_cross_validated_ridge_residual_blind_to_order_sign_and_rotation():
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from sklearn.linear_model import Ridge

    rng, runs, *_, layer = _world(2)
    x_both, x_img, x_txt = layer["image+text"], layer["image"], layer["text"]
    beyond = beyond_single_modalities(x_both, x_img, x_txt, runs, ALPHAS)
    # reference: himalaya's run-wise CV picks each column's alpha, sklearn's Ridge the fit, on
    # the arrays centered within run
    one_hot = (runs[:, None] == np.unique(runs)).astype(float)
    center = lambda a: a - one_hot @ np.linalg.lstsq(one_hot, a, rcond=None)[0]  # noqa: E731
    design, target = center(np.hstack([x_img, x_txt])), center(x_both)
    set_backend("numpy", on_error="raise")
    splits = [(np.flatnonzero(runs != r), np.flatnonzero(runs == r)) for r in np.unique(runs)]
    chosen = RidgeCV(alphas=ALPHAS, cv=splits).fit(design, target).best_alphas_
    for j in (0, 9, 17, 19):
        fit = Ridge(alpha=chosen[j], fit_intercept=False).fit(design, target[:, j])
        np.testing.assert_allclose(beyond[:, j], target[:, j] - fit.predict(design), atol=1e-8)
    # the single-condition ANs in another order, with other signs, rotated, conditions swapped
    rotation = np.linalg.qr(rng.standard_normal((2 * x_img.shape[1],) * 2))[0]
    other = np.hstack([x_img, x_txt])[:, rng.permutation(2 * x_img.shape[1])] * rng.choice([-1, 1], 2 * x_img.shape[1])
    np.testing.assert_allclose(beyond_single_modalities(x_both, *np.split(other, 2, axis=1), runs, ALPHAS), beyond,
                               atol=1e-8)
    np.testing.assert_allclose(beyond_single_modalities(x_both, *np.split(other @ rotation, 2, axis=1), runs, ALPHAS),
                               beyond, atol=1e-8)
    np.testing.assert_allclose(beyond_single_modalities(x_both, x_txt, x_img, runs, ALPHAS), beyond, atol=1e-8)
    # image+text ANs that are the single conditions' in another basis carry (almost) nothing
    # beyond them; the conjunctions, which the single passes see only through a blank, do
    spanned = beyond_single_modalities(np.hstack([x_img, x_txt]) @ rotation, x_img, x_txt, runs, ALPHAS)
    assert (spanned**2).sum() < 1e-3 * len(runs) * spanned.shape[1]
    conjunctions = slice(2 * N_FEAT, None)
    assert (beyond[:, conjunctions] ** 2).mean() > 0.5 * (x_both[:, conjunctions] ** 2).mean()
    with pytest.raises(ValueError, match="time points"):
        beyond_single_modalities(x_both, x_img[1:], x_txt, runs)


@pytest.mark.parametrize("noise", ["1/f", "ar1+ar0.9"])
def test_unified_keeps_power_and_level_when_the_single_condition_ans_outnumber_the_trs(noise):
    """A wide layer (the single conditions' ANs outnumber the TRs; in the demo's fusion layer
    they nearly span the distinct stimuli): a least-squares residual on them is 0, so it could
    find no unified voxel; the ridge residual keeps the conjunctions and stays at level on
    additive voxels."""
    rng, runs, x_img, x_txt, conj, layer = _world(3)
    n_other = len(runs) // 2  # per condition, so the single conditions alone span every TR

    def other_units(X):  # the layer's other units: saturating mixes of what this pass sees
        return _z(np.tanh(_z(X @ rng.standard_normal((X.shape[1], n_other)))))

    wide = {c: np.hstack([X, other_units(X)]) for c, X in layer.items()}
    Y = _additive_then_interactive(rng, runs, x_img, x_txt, conj, noise)
    V = N_VOXELS
    single = np.hstack([wide["image"], wide["text"], (runs[:, None] == np.unique(runs)).astype(float)])
    ols = wide["image+text"] - single @ np.linalg.lstsq(single, wide["image+text"], rcond=None)[0]
    assert np.abs(ols).max() < 1e-6  # nothing left for a least-squares band to find
    beyond = beyond_single_modalities(wide["image+text"], wide["image"], wide["text"], runs, ALPHAS)
    full = _banded([beyond, wide["image"], wide["text"]], Y, runs)
    contrast = paired_contrast(Y, full, _banded([wide["image"], wide["text"]], Y, runs), runs, block_len=20)
    unified = (fdr_bh(contrast.p)[1] < 0.05) & (contrast.mean_dz > 0)
    assert unified[:V].mean() <= 0.05
    assert (contrast.p[:V] < 0.05).mean() <= 0.08  # uncorrected, 150 voxels (binomial sd ~2 %)
    assert contrast.mean_dz[:V].mean() < 0
    assert unified[V:].mean() >= 0.5


@pytest.mark.parametrize("noise", ["1/f", "ar1+ar0.9"])
def test_crossmodal_p_hold_their_level_on_noise(noise):
    """A brain-like map, 94 % of voxels pure noise (so the cross-fitting inflation λ is estimated
    from the voxels): p_unified < .05 at about 5 % or fewer of the noise voxels (measured 3.2-3.5 %
    on 20000), p_gain (an intersection-union test) at fewer still; additive voxels not
    unified, interactive ones found. The bound (option ``block_inflation = "bound"``) takes
    λ = 2 in every test: never less conservative."""
    rng, runs, x_img, x_txt, conj, layer = _world(3)
    signal = _additive_then_interactive(rng, runs, x_img, x_txt, conj, noise)
    Y = np.hstack([signal, _noise(rng, noise, (runs.size, 4500), runs)])  # 6 % signal
    preds = _crossmodal_predictions(Y, runs, layer)
    res = crossmodal_tests(Y, *preds, runs, block_len=20)
    assert 1.2 < res.inflation["unified"] < 2.0
    assert all(1.0 <= lam <= 2.0 for lam in res.inflation.values())
    bound = crossmodal_tests(Y, *preds, runs, block_len=20, inflation="bound")
    assert set(bound.inflation.values()) == {2.0}
    ahead = res.dz_unified > 0
    assert (bound.p_unified[ahead] >= res.p_unified[ahead]).all()
    assert (bound.p_unified < 0.05).sum() < (res.p_unified < 0.05).sum()
    noise_voxels = slice(2 * N_VOXELS, None)
    assert 0.02 <= (res.p_unified[noise_voxels] < 0.05).mean() <= 0.07
    assert (res.p_gain[noise_voxels] < 0.05).mean() <= 0.05
    unified = unified_by_test(fdr_bh(res.p_unified)[1], res.dz_unified, np.ones(Y.shape[1], bool))
    assert unified[noise_voxels].mean() <= 0.005
    assert unified[:N_VOXELS].mean() <= 0.05
    assert unified[N_VOXELS:2 * N_VOXELS].mean() >= 0.8


def test_unified_needs_the_image_text_map():
    q = np.array([0.01, 0.01, 0.2, 0.01])
    dz = np.array([0.2, 0.2, 0.2, -0.1])
    sig = np.array([True, False, True, True])
    assert unified_by_test(q, dz, sig).tolist() == [True, False, False, False]
    with pytest.raises(ValueError):
        unified_by_test(q, dz, sig[:2])


# ------------------------------------------------------------------------------ SI
@pytest.mark.parametrize("noise", ["1/f", "ar1+ar0.9"])
def test_si_test_finds_specialized_voxels_and_holds_its_level_on_balanced_ones(noise):
    """Dual encoder: image-branch vs text-branch held-out predictions, two-sided block test.
    Image voxels: image wins; text voxels: text wins; balanced voxels (equal image and text
    parts) and pure noise: p < .05 at about 5 % or fewer."""
    rng, runs, x_img, x_txt, *_ = _world(5)
    V = 120
    img = _unit(x_img @ rng.standard_normal((N_FEAT, V)))
    txt = _unit(x_txt @ rng.standard_normal((N_FEAT, V)))
    balanced = _unit(_unit(x_img @ rng.standard_normal((N_FEAT, V))) + _unit(x_txt @ rng.standard_normal((N_FEAT, V))))
    signal = np.hstack([img, txt, balanced])
    Y = np.hstack([0.6 * signal, np.zeros((runs.size, V))]) + _noise(rng, noise, (runs.size, 4 * V), runs)
    res = paired_contrast(Y, _ridge(x_img, Y, runs), _ridge(x_txt, Y, runs), runs, alternative="two-sided")
    q = fdr_bh(res.p)[1]
    found = (q < 0.05) & (res.mean_dz > 0)
    assert found[:V].mean() >= 0.6
    assert ((q < 0.05) & (res.mean_dz < 0))[V:2 * V].mean() >= 0.6
    assert (res.p[2 * V:3 * V] < 0.05).mean() <= 0.08
    assert (res.p[3 * V:] < 0.05).mean() <= 0.08
    assert (q[2 * V:] < 0.05).mean() <= 0.02


def test_two_sided_p_is_symmetric_in_the_predictions():
    rng, runs, x_img, x_txt, *_ = _world(6)
    Y = 0.5 * _unit(x_img[:, :3].sum(1, keepdims=True) + rng.standard_normal((runs.size, 5)))
    a, b = _ridge(x_img, Y, runs), _ridge(x_txt, Y, runs)
    ab = paired_contrast(Y, a, b, runs, alternative="two-sided")
    ba = paired_contrast(Y, b, a, runs, alternative="two-sided")
    np.testing.assert_allclose(ab.p, ba.p, atol=1e-10)
    np.testing.assert_allclose(ab.mean_dz, -ba.mean_dz, atol=1e-12)
    with pytest.raises(ValueError, match="alternative"):
        paired_contrast(Y, a, b, runs, alternative="less")


# ------------------------------------------------------------------------------ unique variance
@pytest.mark.parametrize("noise", ["1/f", "ar1+ar0.9"])
def test_unique_variance_test_finds_the_driving_band_only(noise):
    """Image-only voxels: unique image variance found; unique text variance (none planted)
    at about 5 % or fewer."""
    rng, runs, x_img, x_txt, *_ = _world(7)
    V = 150
    Y = 0.7 * _unit(x_img @ rng.standard_normal((N_FEAT, V))) + _noise(rng, noise, (runs.size, V), runs)
    joint = _banded([x_img, x_txt], Y, runs)
    tests = unique_variance_tests(Y, joint, {"image": _banded([x_txt], Y, runs), "text": _banded([x_img], Y, runs)},
                                  runs)
    assert (fdr_bh(tests["image"].p)[1] < 0.05).mean() >= 0.8
    assert (tests["text"].p < 0.05).mean() <= 0.07


# ------------------------------------------------------------------------------ group tests
def test_group_contrast_matches_scipy():
    rng = np.random.default_rng(0)
    d = rng.standard_normal((7, 50)) + np.r_[np.full(10, 3.0), np.zeros(40)]
    for alt in ("two-sided", "greater", "less"):
        g = group_contrast(d, alt)
        ref = stats.ttest_1samp(d, 0.0, alternative=alt)
        np.testing.assert_allclose(g.t, ref.statistic, rtol=1e-10)
        np.testing.assert_allclose(g.p, ref.pvalue, rtol=1e-10)
        np.testing.assert_allclose(g.q, stats.false_discovery_control(ref.pvalue), rtol=1e-10)
    g = group_contrast(d, "greater")
    assert g.significant[:10].all() and g.significant[10:].sum() <= 2
    assert not group_contrast(-d, "greater").significant.any()  # the wrong side never rejects
    with pytest.raises(ValueError):
        group_contrast(d[0])


def _subject_glm(rng, runs, regressors, hit, noise):
    """One subject: BOLD following atom 0 at the planted voxels (with a per-subject gain and
    a per-voxel HRF it does not assume: a delayed copy), GLM t (K, V) of the atoms."""
    from alignment.encoding import fit_atoms_glm

    T, V = runs.size, hit.size
    delayed = np.roll(regressors[:, 0], 1)  # HRF mismatch: the signal lags the regressor
    Y = _noise(rng, noise, (T, V), runs)
    Y[:, hit] += (0.4 + 0.1 * rng.random()) * delayed[:, None]
    return fit_atoms_glm(regressors, Y, runs, tr=1.0).t


@pytest.mark.parametrize("noise", ["1/f", "ar1+ar0.9"])
def test_coupling_group_test_recovers_hit_voxels_holds_level_and_ignores_atom_signs(noise):
    rng, runs, *_ = _world(8)
    K, N, V, S = 5, 12, 400, 8
    regressors = _z(_ar1(rng, (runs.size, K), 0.8))
    codes = rng.standard_normal((N, K)) * (rng.random((N, K)) < 0.4)
    codes[0] = [1.0, 0, 0, 0.3, 0]  # AN 0 loads on atom 0
    hit = np.arange(V) < 60
    ts = [_subject_glm(rng, runs, regressors, hit, noise) for _ in range(S)]
    g = coupling_group(codes, ts, an=0)
    ref = stats.ttest_1samp(np.stack([codes[0] @ t for t in ts]), 0.0)
    np.testing.assert_allclose(g.t, ref.statistic, rtol=1e-9)
    assert g.significant[hit].mean() >= 0.8
    assert (g.mean[hit] > 0).all()
    assert (g.p[~hit] < 0.05).mean() <= 0.08
    assert g.significant[~hit].mean() <= 0.02
    # each subject's atoms flipped at random (codes and t together): the same group map
    flipped_codes, flipped_ts = [], []
    for t in ts:
        s = np.where(rng.random(K) < 0.5, -1.0, 1.0)
        flipped_codes.append(codes * s)
        flipped_ts.append(t * s[:, None])
    h = coupling_group(flipped_codes, flipped_ts, an=0)
    np.testing.assert_allclose(h.t, g.t, rtol=1e-9)
    # and atoms reordered
    order = rng.permutation(K)
    np.testing.assert_allclose(an_coupling(codes[:, order], ts[0][order], 0), an_coupling(codes, ts[0], 0))


def test_coupling_checks_shapes():
    with pytest.raises(ValueError, match="do not match"):
        an_coupling(np.ones((3, 4)), np.ones((5, 10)), 0)
    with pytest.raises(IndexError):
        an_coupling(np.ones((3, 4)), np.ones((4, 10)), 3)
    with pytest.raises(ValueError, match="code arrays"):
        coupling_group([np.ones((3, 4))] * 2, [np.ones((4, 10))] * 3, 0)


# ------------------------------------------------------------------------------ stages
def test_crossmodal_and_specialization_stages_run_and_key_their_options(planted, tmp_path):
    from dataclasses import replace

    from alignment.analyses.integration import INFLATION_BOUND
    from alignment.cache import Cache
    from alignment.data import load_dataset
    from alignment.keys import BandsKey, LayerKey, Options
    from alignment.pipeline import Study
    from alignment.stages import STAGES, analyses

    ds = load_dataset(planted)
    study = Study(ds, Cache(tmp_path), Options(n_null=20, banded_iter=3, alphas=(1.0, 100.0, 1e4)), device="cpu")
    cm = study.get("crossmodal", LayerKey(SPEC, "image", 2), "01")
    V = np.asarray(cm["gain"]).shape[0]
    for name in ("r_both", "r_image", "r_text", "r_additive", "r_full", "p_gain", "q_gain", "dz_unified",
                 "p_unified", "q_unified"):
        assert np.asarray(cm[name]).shape == (V,)
    # the image branch of a dual encoder sees the same frames under image+text and image
    np.testing.assert_allclose(cm["r_both"], cm["r_image"], atol=1e-5)
    assert ((np.asarray(cm["p_gain"]) > 0.5) | (np.asarray(cm["gain"]) <= 1e-5)).all()
    assert {"block_len", "banded_iter"} <= set(cm.params)
    sp = study.get("specialization", BandsKey(SPEC, ("image", "text"), 2), "01")
    assert np.asarray(sp["p_unique"]).shape == (2, V)
    r_img = np.asarray(sp["r_image"])
    assert r_img[:200].mean() > 0.3  # the planted voxels follow an image AN
    # 120 TRs give 6 blocks: little power, so compare the planted voxels with the rest
    dz, p = np.asarray(sp["dz_si"]), np.asarray(sp["p_si"])
    assert dz[:200].mean() > 0.1 > abs(dz[200:].mean())
    assert np.median(p[:200]) < 0.5 * np.median(p[200:])
    assert (np.asarray(sp["q_si"])[200:] < 0.05).mean() < 0.01
    # every block test records its cross-fitting inflation, within [1, the bound]
    assert set(cm.meta["inflation"]) == {"unified", "gain_image", "gain_text"}
    assert set(sp.meta["inflation"]) == {"unique_image", "unique_text", "si"}
    recorded = [*cm.meta["inflation"].values(), *sp.meta["inflation"].values()]
    assert all(1.0 <= lam <= INFLATION_BOUND for lam in recorded)
    # the option that sets λ is part of both stages' keys
    bound = Study(ds, Cache(tmp_path), replace(study.options, block_inflation="bound"), device="cpu")
    for stage, target in (("crossmodal", LayerKey(SPEC, "image", 2)),
                          ("specialization", BandsKey(SPEC, ("image", "text"), 2))):
        assert study.key(stage, target, "01") != bound.key(stage, target, "01")
    assert {"crossmodal", "specialization"} <= set(analyses())
    with pytest.raises(ValueError, match="names the 'image\\+text' condition"):
        study.get("crossmodal", LayerKey(SPEC, "image", 2, condition="image"), "01")


# ------------------------------------------------------------------------------ summaries
class _FakeStudy:
    """What the summaries read: ``get(stage, target, subject)``, ``dataset.subjects``, ``options``."""

    def __init__(self, entries, subjects):
        from types import SimpleNamespace

        from alignment.keys import Options

        self.entries, self.options = entries, Options()
        self.dataset = SimpleNamespace(subjects=list(subjects), root="fake")

    def get(self, stage, target, subject=None):
        from alignment.pipeline import NotCached

        try:
            return self.entries[(stage, target, subject)]
        except KeyError:
            raise NotCached(stage, str(target)) from None


def _fake_modality_study(with_crossmodal=True):
    """5 subjects, 300 voxels: voxels 0-49 gain (image+text > both single conditions), image
    branch > text branch, unified (full > additive) and unique image variance; the rest null."""
    from alignment.keys import BandsKey, LayerKey

    rng = np.random.default_rng(0)
    V, subjects = 300, ["01", "02", "03", "04", "05"]
    eff = np.r_[np.full(50, 1.75), np.zeros(V - 50)]
    entries = {}
    for s in subjects:
        r = {c: np.clip(0.2 + 0.05 * rng.standard_normal(V), -1, 1) for c in ("image+text", "image", "text")}
        r["image+text"] = r["image+text"] + 0.2 * eff
        for c, rc in r.items():
            entries[("encoding", LayerKey("fusion", "cross", 1, "attn", c), s)] = {"scores": rc, "q": np.full(V, 0.01)}
        entries[("encoding", LayerKey("dual", "image", 2), s)] = {"scores": r["image"] + 0.2 * eff,
                                                                  "q": np.full(V, 0.01)}
        entries[("encoding", LayerKey("dual", "text", 2), s)] = {"scores": r["text"], "q": np.full(V, 0.01)}
        if with_crossmodal:
            entries[("crossmodal", LayerKey("fusion", "cross", 1), s)] = {
                "r_full": r["image+text"], "r_additive": np.maximum(r["image"], r["text"]) + 0.01,
                "q_gain": np.r_[np.full(50, 0.001), np.ones(V - 50)], "q_unified": np.r_[np.full(50, 0.001), np.ones(V - 50)],
                "dz_unified": 0.2 * eff}
        entries[("variance", BandsKey("dual", ("image", "text"), 2), s)] = {
            "r2": np.full(V, 0.1), "shared": np.zeros(V),
            "unique": np.stack([0.05 * eff + 0.01 * rng.standard_normal(V), 0.01 * rng.standard_normal(V)])}
    return _FakeStudy(entries, subjects), subjects, V


def test_group_modality_summaries_are_one_sample_t_tests_across_subjects():
    from alignment.keys import BandsKey, LayerKey
    from alignment.stats import fisher_z
    from alignment.summaries import dual_modality, fusion_modality, variance_maps

    study, subjects, V = _fake_modality_study()
    enc = {k: np.stack([study.get("encoding", k, s)["scores"] for s in subjects])
           for k in [LayerKey("fusion", "cross", 1, "attn", c) for c in ("image+text", "image", "text")]
           + [LayerKey("dual", b, 2) for b in ("image", "text")]}
    z = {(k.model, k.branch if k.model == "dual" else k.condition): fisher_z(v) for k, v in enc.items()}

    f = fusion_modality(study, "group", LayerKey("fusion", "cross", 1))
    d = z["fusion", "image+text"] - np.maximum(z["fusion", "image"], z["fusion", "text"])
    ref = stats.ttest_1samp(d, 0.0, alternative="greater").pvalue
    np.testing.assert_allclose(f["q_gain"], stats.false_discovery_control(ref), rtol=1e-5)
    assert f["tested"] and f["unified"][:50].mean() >= 0.9 and not f["unified"][50:].any()
    assert f["gain_significant"][:50].mean() >= 0.9 and f["gain_significant"][50:].mean() <= 0.02

    dm = dual_modality(study, "group", "dual", 2, 2)
    ref = stats.ttest_1samp(z["dual", "image"] - z["dual", "text"], 0.0).pvalue
    np.testing.assert_allclose(dm["q_si"], stats.false_discovery_control(ref), rtol=1e-5)
    assert dm["tested"] and (dm["si_tested"][:50] > 0).mean() >= 0.9  # NaN (untested) compares False
    assert np.isfinite(dm["si_tested"][50:]).mean() <= 0.02

    vm = variance_maps(study, "group", BandsKey("dual", ("image", "text"), 2))
    u = np.stack([study.get("variance", BandsKey("dual", ("image", "text"), 2), s)["unique"] for s in subjects])
    for j, b in enumerate(("image", "text")):
        ref = stats.ttest_1samp(u[:, j], 0.0, alternative="greater").pvalue
        np.testing.assert_allclose(vm["unique_q"][b], stats.false_discovery_control(ref), rtol=1e-4)
    assert (vm["unique_q"]["image"][:50] < 0.05).mean() >= 0.9 and (vm["unique_q"]["text"] < 0.05).mean() <= 0.02


def test_a_subject_without_the_tests_is_untested_not_unified():
    from alignment.keys import LayerKey
    from alignment.summaries import dual_modality, fusion_modality

    study, subjects, V = _fake_modality_study(with_crossmodal=False)
    f = fusion_modality(study, "01", LayerKey("fusion", "cross", 1))
    assert not f["tested"] and not f["unified"].any() and np.isnan(f["q_gain"]).all()
    dm = dual_modality(study, "01", "dual", 2, 2)
    assert not dm["tested"] and np.isnan(dm["si_tested"]).all() and np.isfinite(dm["si"]).all()
    study, *_ = _fake_modality_study(with_crossmodal=True)
    f = fusion_modality(study, "01", LayerKey("fusion", "cross", 1))
    assert f["tested"] and f["unified"][:50].all() and f["n_unified"] == 50
