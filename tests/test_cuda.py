"""Fits and extraction on a CUDA GPU equal the CPU results (within 1e-4, the tolerance the
executor promises). Skipped where torch sees no GPU; the CPU torch path is tested in
test_encoding.py."""

import numpy as np
import pytest
import torch

import alignment  # noqa: F401  (makes torchvision importable before transformers)
from alignment.encoding import fit_banded_ridge, fit_ridge, predict_ridge, ridge_null_p
from alignment.stats import run_permutations

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

ALPHAS = np.logspace(-1, 5, 13)
TOL = 1e-4


def _problem(seed=0, n_runs=4, run_len=120, n_features=40, n_voxels=300):
    rng = np.random.default_rng(seed)
    runs = np.repeat(np.arange(n_runs), run_len)
    X = rng.standard_normal((runs.size, n_features)) + 1.0
    W = rng.standard_normal((n_features, n_voxels)) * np.linspace(0.0, 0.5, n_voxels)
    Y = X @ W + rng.standard_normal((runs.size, n_voxels)) * 3 + 5.0
    return X, Y, runs


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ridge_on_cuda_equals_numpy(dtype):
    X, Y, runs = _problem()
    cpu = fit_ridge(X, Y, runs, ALPHAS, dtype=dtype, return_predictions=True)
    gpu = fit_ridge(X, Y, runs, ALPHAS, dtype=dtype, backend="torch", device="cuda", voxel_chunk=64,
                    return_predictions=True)
    np.testing.assert_allclose(gpu.scores, cpu.scores, atol=TOL)
    np.testing.assert_allclose(gpu.predictions, cpu.predictions, atol=TOL * np.abs(cpu.predictions).max())
    # the alpha grid is coarse: a different choice may only happen between near-ties
    assert np.mean(gpu.fold_alphas == cpu.fold_alphas) > (0.999 if dtype == "float64" else 0.98)
    pred = predict_ridge(X, Y, runs, cpu.best_alphas, backend="torch", device="cuda")
    np.testing.assert_allclose(pred, predict_ridge(X, Y, runs, cpu.best_alphas), atol=TOL)


def test_permutation_p_on_cuda_equals_numpy():
    X, Y, runs = _problem(seed=1, n_voxels=120)
    fit = fit_ridge(X, Y, runs, ALPHAS)
    perms = run_permutations(runs, 40, "circular", seed=0)
    p_cpu = ridge_null_p(X, Y, runs, fit, perms)
    p_gpu = ridge_null_p(X, Y, runs, fit, perms, backend="torch", device="cuda")
    np.testing.assert_allclose(p_gpu, p_cpu, atol=TOL)


def test_banded_ridge_on_cuda_equals_numpy():
    rng = np.random.default_rng(2)
    runs = np.repeat(np.arange(3), 80)
    XA, XB = rng.standard_normal((runs.size, 10)), rng.standard_normal((runs.size, 8))
    Y = rng.standard_normal((runs.size, 40))
    Y[:, :20] += XA @ rng.standard_normal((10, 20)) * 0.5
    Y[:, 10:] += XB @ rng.standard_normal((8, 30)) * 0.5
    alphas = np.logspace(-1, 4, 6)
    cpu = fit_banded_ridge([XA, XB], Y, runs, alphas, n_iter=4)
    gpu = fit_banded_ridge([XA, XB], Y, runs, alphas, n_iter=4, backend="torch", device="cuda")
    np.testing.assert_allclose(gpu.r2_split, cpu.r2_split, atol=TOL)
    np.testing.assert_allclose(gpu.unique, cpu.unique, atol=TOL)


@pytest.mark.parametrize("glm", ["separate", "joint"])
def test_atom_glm_on_cuda_equals_numpy(glm):
    from alignment.keys import Options
    from alignment.stages.mapping import atoms_glm

    rng = np.random.default_rng(3)
    runs = np.repeat(np.arange(3), 120)
    atoms = np.cumsum(rng.standard_normal((runs.size, 6)), 0)
    Y = rng.standard_normal((runs.size, 200))
    Y[:, :50] += atoms[:, :2] @ rng.standard_normal((2, 50)) * 0.1
    cpu, q_cpu = atoms_glm(atoms, Y, runs, 1.0, Options(glm=glm))
    gpu, q_gpu = atoms_glm(atoms, Y, runs, 1.0, Options(glm=glm), backend="torch", device="cuda")
    np.testing.assert_allclose(gpu.t, cpu.t, atol=TOL)
    np.testing.assert_allclose(q_gpu, q_cpu, atol=TOL)


@pytest.mark.parametrize("spec, kind", [("random:bert:tiny", "hidden"), ("random:hf-clip:tiny", "hidden"),
                                        ("random:meter:tiny", "mlp"), ("random:clip:demo-tiny", "attn")])
def test_ans_on_cuda_equal_cpu(spec, kind):
    from PIL import Image

    from alignment.extract import extract_ans
    from alignment.models import load_model

    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)) for _ in range(4)]
    captions = ["a red ball on grass", "two dogs", "a woman rides a bicycle", "rain"]
    assert load_model(spec, "cuda").device().type == "cuda"
    adapter = load_model(spec, "cpu")
    cpu = extract_ans(adapter, frames, captions, kind=kind)
    adapter.model.to("cuda")
    gpu = extract_ans(adapter, frames, captions, kind=kind)
    assert cpu.keys() == gpu.keys()
    for key in cpu:
        scale = np.abs(cpu[key]).max()
        diff = np.abs(gpu[key] - cpu[key]).max() / scale
        r = np.corrcoef(gpu[key].ravel(), cpu[key].ravel())[0, 1]
        print(f"{spec} {key}: max |gpu - cpu| / max |cpu| = {diff:.2e}, r = {r:.6f}")
        assert diff < TOL, key
