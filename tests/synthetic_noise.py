"""Null noise the estimators do not assume, shared by the tests of paired block tests."""

import numpy as np


def ar1(rng, shape, phi):
    e = rng.standard_normal(shape)
    for t in range(1, shape[0]):
        e[t] = phi * e[t - 1] + np.sqrt(1 - phi ** 2) * e[t]
    return e


def pink(rng, shape, runs):
    """1/f noise (power ∝ 1/frequency), drawn run by run, unit variance: (T, V)."""
    out = np.empty(shape)
    for r in np.unique(runs):
        idx = np.flatnonzero(runs == r)
        f = np.fft.rfftfreq(idx.size)
        amp = np.r_[0.0, f[1:] ** -0.5][:, None]
        spec = amp * (rng.standard_normal((f.size, shape[1])) + 1j * rng.standard_normal((f.size, shape[1])))
        x = np.fft.irfft(spec, n=idx.size, axis=0)
        out[idx] = x / x.std(0)
    return out


def noise(rng, kind, shape, runs):
    if kind == "1/f":
        return pink(rng, shape, runs)
    return (ar1(rng, shape, 0.5) + ar1(rng, shape, 0.9)) / np.sqrt(2)  # "ar1+ar0.9"
