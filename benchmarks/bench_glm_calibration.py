"""False-positive rate of the atom GLM on null voxels under noise that is not AR(1).

    python benchmarks/bench_glm_calibration.py [--voxels 2000] [--atoms 32] [--runs 4]
        [--run-len 300] [--seed 0] [--models ar1,ar5] [--noises ...] [--variants ...]

The BOLD of every voxel is noise independent of the atoms; the atoms are smooth, partly
collinear, HRF-convolved sparse codes built as the neuron mapping builds its regressors
(:func:`alignment.stages.mapping.atom_regressors`). Noise models (each with a slow drift added:
a random linear trend and a random cosine of period > 200 s per run, 0.3 SD each):

- ``ar1``: AR(1), rho = 0.4;
- ``ar1+slow``: AR(1) rho = 0.4 plus a slow AR(0.9), equal variance;
- ``white+slow``: white noise plus a slow AR(0.9), equal variance;
- ``pink``: 1/f noise (power ~ 1/f from the lowest frequency of the run up);
- ``hrf-mismatch``: ``ar1+slow`` plus the response, through a late and wide HRF (peak 7 s), to
  an unmodelled sparse stimulus unrelated to the atoms.

Prints, per noise process, GLM and noise model (``joint``: AR coefficients from the residuals of
the nuisance-only model with their autocovariances bias-corrected, the default; ``joint/nilearn``: from the residuals of the full model, as
nilearn's ``run_glm``; ``marginal``: one GLM per atom), the share of (atom, voxel)
tests with p < .05 and p < .001 (nominal: 0.05 and 0.001).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

NOISES = ("ar1", "ar1+slow", "white+slow", "pink", "hrf-mismatch")


def _ar(rng, phi, shape, runs):
    """Unit-variance AR(1) with coefficient phi, restarted (stationary) at each run. (T, V)."""
    e = rng.standard_normal(shape)
    x = np.empty(shape)
    starts = np.r_[True, runs[1:] != runs[:-1]]
    for t in range(shape[0]):
        x[t] = e[t] if starts[t] else phi * x[t - 1] + np.sqrt(1 - phi ** 2) * e[t]
    return x


def _pink(rng, shape, runs):
    """Unit-variance 1/f noise, generated per run by shaping white noise's spectrum. (T, V)."""
    out = np.empty(shape)
    for r in np.unique(runs):
        idx = np.flatnonzero(runs == r)
        spec = np.fft.rfft(rng.standard_normal((idx.size, shape[1])), axis=0)
        f = np.fft.rfftfreq(idx.size)
        f[0] = f[1]
        x = np.fft.irfft(spec / np.sqrt(f)[:, None], n=idx.size, axis=0)
        out[idx] = (x - x.mean(0)) / x.std(0)
    return out


def _drift(rng, shape, runs, tr):
    """Slow drift per run: a random linear trend and a random cosine of period 200-600 s."""
    out = np.empty(shape)
    for r in np.unique(runs):
        idx = np.flatnonzero(runs == r)
        t = np.arange(idx.size) * tr
        lin = (t / t[-1] - 0.5)[:, None] * rng.standard_normal(shape[1])[None] * 0.3 * np.sqrt(12)
        period = rng.uniform(200, 600, shape[1])
        phase = rng.uniform(0, 2 * np.pi, shape[1])
        out[idx] = lin + 0.3 * np.sqrt(2) * np.cos(2 * np.pi * t[:, None] / period[None] + phase[None])
    return out


def late_hrf_regressor(events, runs, tr):
    """Events (T, m) through a late, wide HRF (gamma, peak ~7 s, no undershoot), within run."""
    from scipy.stats import gamma

    t = np.arange(0, 32, tr)
    h = gamma.pdf(t, 8, scale=1.0)
    h /= h.sum()
    out = np.empty_like(events, dtype=np.float64)
    for r in np.unique(runs):
        idx = np.flatnonzero(runs == r)
        for j in range(events.shape[1]):
            out[idx, j] = np.convolve(events[idx, j], h)[:idx.size]
    return out


def simulate_atoms(rng, runs, tr=1.0, n_atoms=32, shared=0.6):
    """HRF-convolved, z-scored atom regressors (T, K): sparse codes of a slowly varying stimulus
    (each atom: a smoothed sparse series plus a share of common slow factors, so the atoms are
    partly collinear as real atoms of one layer are)."""
    from alignment.stages.mapping import atom_regressors

    T = runs.size
    sparse = rng.standard_normal((T, n_atoms)) * (rng.random((T, n_atoms)) < 0.15)
    smooth = _ar(rng, 0.7, (T, n_atoms), runs) * 0.5 + sparse
    common = _ar(rng, 0.9, (T, 3), runs) @ rng.standard_normal((3, n_atoms))
    raw = smooth + shared * common
    return np.asarray(atom_regressors(raw.T, runs, tr, "spm"), np.float64)


def simulate_noise(rng, kind, shape, runs, tr=1.0):
    """Null BOLD (T, V) of one noise process of :data:`NOISES`, drift included."""
    if kind == "ar1":
        x = _ar(rng, 0.4, shape, runs)
    elif kind == "ar1+slow":
        x = (_ar(rng, 0.4, shape, runs) + _ar(rng, 0.9, shape, runs)) / np.sqrt(2)
    elif kind == "white+slow":
        x = (rng.standard_normal(shape) + _ar(rng, 0.9, shape, runs)) / np.sqrt(2)
    elif kind == "pink":
        x = _pink(rng, shape, runs)
    elif kind == "hrf-mismatch":
        x = (_ar(rng, 0.4, shape, runs) + _ar(rng, 0.9, shape, runs)) / np.sqrt(2)
        events = rng.standard_normal((shape[0], 4)) * (rng.random((shape[0], 4)) < 0.1)
        resp = late_hrf_regressor(events, runs, tr)
        resp = resp / resp.std(0)
        x = x + resp @ rng.standard_normal((4, shape[1])) * 0.5
    else:
        raise ValueError(f"unknown noise {kind!r}; expected one of {', '.join(NOISES)}")
    return x + _drift(rng, shape, runs, tr)


#: GLM variants compared: (label, separate, source of the AR residuals of the joint model,
#: bias correction of their autocovariances)
VARIANTS = (("joint", False, "nuisance", True), ("joint/nilearn", False, "model", False),
            ("marginal", True, "nuisance", True))


def false_positive_rates(atoms, Y, runs, tr=1.0, noise_model="ar1", separate=False, ar_residuals="nuisance",
                         ar_bias=True):
    """Share of (atom, voxel) tests with p < .05 and p < .001 on null data: (float, float)."""
    from alignment.encoding import fit_atoms_glm

    res = fit_atoms_glm(atoms, Y, runs, tr=tr, noise_model=noise_model, separate=separate,
                        ar_residuals=ar_residuals, ar_bias=ar_bias)
    return float((res.p < 0.05).mean()), float((res.p < 0.001).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=int, default=2000)
    ap.add_argument("--atoms", type=int, default=32)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--run-len", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default="ar1,ar5")
    ap.add_argument("--noises", default=",".join(NOISES))
    ap.add_argument("--variants", default=",".join(v[0] for v in VARIANTS))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    runs = np.repeat(np.arange(args.runs), args.run_len)
    atoms = simulate_atoms(rng, runs, n_atoms=args.atoms)
    c = np.corrcoef(atoms.T)[np.triu_indices(args.atoms, 1)]
    print(f"T = {runs.size} ({args.runs} runs), K = {args.atoms} atoms (median |corr| "
          f"{np.median(np.abs(c)):.2f}, max {np.abs(c).max():.2f}), V = {args.voxels}")
    print(f"{'noise':14s} {'glm':14s} {'model':6s} {'p<.05':>7s} {'p<.001':>7s}")
    for kind in args.noises.split(","):
        Y = simulate_noise(rng, kind, (runs.size, args.voxels), runs)
        for label, separate, source, bias in VARIANTS:
            if label not in args.variants.split(","):
                continue
            for model in args.models.split(","):
                f05, f001 = false_positive_rates(atoms, Y, runs, noise_model=model, separate=separate,
                                                 ar_residuals=source, ar_bias=bias)
                print(f"{kind:14s} {label:14s} {model:6s} {f05:7.4f} {f001:7.4f}", flush=True)


if __name__ == "__main__":
    main()
