"""Compute & cache: launch runs through the pipeline; browse and clean the cache."""

import os

import pandas as pd
import streamlit as st

from alignment.analyses.integration import INFLATIONS
from alignment.cache import Cache
from alignment.cli_cache import format_size
from alignment.config import GLM_NOISES, GLMS, HRFS
from alignment.conventions import AN_KINDS, CONDITIONS, parse_layers
from alignment.pipeline import Options
from alignment.stages import analyses as registered_analyses, default_analyses
import ui as S

state = S.page("Compute & cache", caption="Computations go through the same pipeline as "
                                          "`python -m alignment run`; every finished unit is cached at once, so an "
                                          "interrupted run resumes where it stopped.",
               methods_of=('Data and folds', 'Validation on the simulated demo'))
root = S.cache_root()
st.caption(f"Cache folder: `{root}`")

tab_run, tab_demo, tab_cache = st.tabs(["Run analyses", "Demo", "Browse cache"])


def default_options(folder: str) -> Options:
    """The options a dataset's results were computed with (the demo's for the demo), else the defaults."""
    from alignment import summaries
    from alignment.data import load_dataset
    from alignment.demo import demo_root

    if not folder:
        return Options()
    if os.path.abspath(folder) in {os.path.abspath(demo_root(Cache(root), small=s)) for s in (True, False)}:
        return summaries.demo_options()
    try:
        S.check_dataset_folder(folder)
        return summaries.cached_options(load_dataset(folder), Cache(root)) or Options()
    except Exception:  # noqa: BLE001 - not a dataset (yet): the run reports it
        return Options()


with tab_run:
    default_ds = "" if state.is_demo else state.dataset
    if state.is_demo:
        from alignment.demo import demo_root

        default_ds = str(demo_root(Cache(root), small=S.demo_small()))
    with st.form("compute_form"):
        dataset = st.text_input("Dataset folder", value=default_ds, key="cp_dataset",
                                help="A folder with dataset.toml, stimuli/ and sub-*/ (see the README)")
        specs = st.text_area("Model specs (one per line)", value=state.model, key="cp_specs",
                             help="e.g. clip:ViT-B-32@/path/ckpt.pt, meter:/path/meter.ckpt, random:clip:ViT-B-32, minilm")
        c1, c2, c3 = st.columns(3)
        branches = c1.text_input("Branches (comma-separated; empty = all)", value="", key="cp_branches")
        layers = c2.text_input("Layers (all, or e.g. 0-5,8)", value="all", key="cp_layers")
        subjects = c3.text_input("Subjects (comma-separated; empty = all)", value="", key="cp_subjects")
        c1, c2, c3 = st.columns(3)
        kinds = c1.multiselect("AN kinds", AN_KINDS, default=["attn"], key="cp_kinds")
        conditions = c2.multiselect("Conditions", CONDITIONS, default=["image+text"], key="cp_conditions")
        analyses = c3.multiselect("Analyses", list(registered_analyses()), default=list(default_analyses()),
                                  key="cp_analyses",
                                  help="variance_partition: banded ridge with one band per branch; integration: "
                                       "each layer against the image and text baselines below; lesion: "
                                       "encoding r as random vs most-linked ANs are removed")
        c1, c2 = st.columns(2)
        image_baseline = c1.text_input("Integration: image baseline", value="", key="cp_image_baseline",
                                       placeholder="e.g. vit:/path/to/vit-folder")
        text_baseline = c2.text_input("Integration: text baseline", value="", key="cp_text_baseline",
                                      placeholder="e.g. roberta:/path/to/roberta-folder")
        with st.expander("Analysis options (part of every result's cache key)"):
            base = default_options(default_ds)
            c1, c2, c3, c4 = st.columns(4)
            edited = dict(
                hrf=c1.selectbox("HRF", HRFS, index=HRFS.index(base.hrf), key="cp_hrf",
                                 help="spm: ANs convolved with the canonical HRF; fir: ridge designs use the "
                                      "ANs delayed by 1..6 s (the atom GLM keeps the canonical HRF); none: "
                                      "unconvolved"),
                null=c2.selectbox("Null", ("circular", "block"), index=("circular", "block").index(base.null),
                                  key="cp_null"),
                n_null=c3.number_input("Null draws", 10, 10000, int(base.n_null), key="cp_n_null"),
                glm=c4.selectbox("GLM", GLMS, index=GLMS.index(base.glm), key="cp_glm",
                                 format_func=lambda g: {"joint": "joint (all atoms)",
                                                        "separate": "marginal (one per atom)"}[g],
                                 help="joint: every atom's effect given the others (links counted from it); "
                                      "marginal: one GLM per atom, which links a voxel to every atom "
                                      "correlated with the one that drives it"),
                glm_noise=c3.selectbox("GLM noise model", GLM_NOISES, index=GLM_NOISES.index(base.glm_noise),
                                       key="cp_glm_noise",
                                       help="AR(p) noise model of the atom GLM (default ar5); ols: none"),
                n_atoms=c1.number_input("Atoms K", 2, 1024, int(base.n_atoms), key="cp_n_atoms"),
                sparsity=c2.number_input("Sparsity (L1)", 0.0, 100.0, float(base.sparsity), key="cp_sparsity"),
                seed=c3.number_input("Seed", 0, 2**31 - 1, int(base.seed), key="cp_seed"),
                fdr_q=c4.number_input("FDR q", 0.0001, 0.5, float(base.fdr_q), format="%.4f", key="cp_fdr_q"),
                banded_iter=c1.number_input("Banded-ridge samples", 1, 1000, int(base.banded_iter), key="cp_banded"),
                block_len=c2.number_input("Integration block (TRs)", 3, 1000, int(base.block_len), key="cp_block"),
                block_inflation=c3.selectbox("Block tests' λ", INFLATIONS,
                                             index=INFLATIONS.index(base.block_inflation), key="cp_inflation",
                                             help="variance factor of the paired block tests (integration, "
                                                  "cross-modal, specialization): estimated from the map's voxels, "
                                                  "or the bound 2 everywhere (more conservative)"),
            )
            alphas = st.text_input("Ridge alphas (comma-separated)", ", ".join(f"{a:g}" for a in base.alphas),
                                   key="cp_alphas")
            st.caption("Defaults: the options this dataset's cached results were computed with. The app reads "
                       "each dataset with the options most of its results use.")
        device = st.selectbox("Device", ("auto", "cpu", "cuda"), key="cp_device")
        go = st.form_submit_button("Run", type="primary")
    if go:
        from alignment.data import load_dataset
        from alignment.pipeline import Baselines, ModelPlan, Study
        from alignment.plan import compute

        with S.guard(state) as g:
            if not dataset.strip():
                raise ValueError("give a dataset folder")
            S.check_dataset_folder(dataset.strip())
            ds = load_dataset(dataset.strip())
            models = [s.strip() for s in specs.splitlines() if s.strip()]
            if not models:
                raise ValueError("give at least one model spec")
            if not kinds or not conditions or not analyses:
                raise ValueError("choose at least one AN kind, condition and analysis")
            subs = [s.strip() for s in subjects.split(",") if s.strip()] or list(ds.subjects)
            missing = sorted(set(subs) - set(ds.subjects))
            if missing:
                raise ValueError(f"subjects {missing} not in {ds.root}; found {ds.subjects}")
            plans = [ModelPlan(m, tuple(b.strip() for b in branches.split(",") if b.strip()) or None,
                               parse_layers(layers), tuple(kinds), tuple(conditions)) for m in models]
            baselines = None
            if "integration" in analyses:
                if not image_baseline.strip() or not text_baseline.strip():
                    raise ValueError("the integration analysis needs an image and a text baseline model spec")
                baselines = Baselines(image_baseline.strip(), text_baseline.strip())
            try:
                alpha_grid = tuple(float(a) for a in alphas.replace(" ", "").split(",") if a)
            except ValueError:
                raise ValueError(f"ridge alphas must be numbers separated by commas, got {alphas!r}") from None
            if not alpha_grid or min(alpha_grid) <= 0:
                raise ValueError("give at least one ridge alpha, all > 0")
            options = Options(**edited, alphas=alpha_grid)
            study = Study(ds, Cache(root), options, device=device)
            bar = st.progress(0.0, text="starting …")

            def progress(done, total, label):
                bar.progress(min(1.0, done / total if total else 1.0), text=f"{label} ({done}/{total} units)")

            plan = compute(study, plans, subs, tuple(analyses), progress=progress, baselines=baselines)
            S.clear_caches()
            st.success(f"{len(plan.requested)} analysis units up to date. Open the dataset in the sidebar "
                       f"(Dataset = `{ds.root}`) to explore them.")

with tab_demo:
    st.write("The simulated demo is built into the cache on first use. Build or complete it here "
             "(missing results only are computed).")
    full = st.checkbox("Every layer of every demo model (several times longer)", key="cp_demo_full",
                       help="By default the demo covers the planted layers, a distractor layer and the baselines.")
    if st.button("Build / complete the demo", key="cp_demo"):
        from alignment.demo import run_demo

        with S.guard(state):
            bar = st.progress(0.0, text="building the simulated dataset …")

            def progress(done, total, label):
                bar.progress(min(1.0, done / total if total else 1.0), text=f"{label} ({done}/{total} units)")

            run_demo(Cache(root), small=S.demo_small(), full=full, progress=progress)
            S.clear_caches()
            st.success("The demo is complete.")

with tab_cache:
    cache = Cache(root)
    with S.guard(state) as g:
        usage = cache.disk_usage()
        entries = cache.entries()
    if not g.failed:
        items = sorted(usage.items(), key=lambda kv: kv[0] == "total")  # total last
        for start in range(0, len(items), 6):
            row = items[start:start + 6]
            for c, (stage, n) in zip(st.columns(6), row):
                c.metric(stage, format_size(n))
        if not entries:
            st.info("The cache is empty.")
        else:
            df = pd.DataFrame([dict(stage=e.stage, key=e.key[:16], size=format_size(e.size), bytes=e.size,
                                    created=e.created.strftime("%Y-%m-%d %H:%M"), description=e.description)
                               for e in entries])
            stages = ["all"] + sorted(df.stage.unique())
            c1, c2 = st.columns([1, 3])
            pick = c1.selectbox("Stage", stages, key="cp_stage")
            text = c2.text_input("Filter descriptions", key="cp_filter")
            view = df if pick == "all" else df[df.stage == pick]
            if text:
                view = view[view.description.str.contains(text, case=False, regex=False)]
            st.dataframe(view.drop(columns=["bytes"]), hide_index=True, width="stretch", height=320)
            st.caption(f"{len(view)} of {len(df)} entries, {format_size(int(view.bytes.sum()))}.")
            S.export_buttons(None, "cache_entries", table=view.drop(columns=["bytes"]))

            st.markdown("**Delete entries**")
            labels = {f"{r.stage}/{r.key}": f"{r.stage}/{r.key} — {r.description} ({r.size})"
                      for r in view.itertuples()}
            chosen = st.multiselect("Entries to delete", list(labels), format_func=labels.get, key="cp_delete")
            confirm = st.checkbox(f"Yes, delete {len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'} "
                                  "(they are recomputed when needed)", key="cp_confirm")
            if st.button("Delete", key="cp_delete_go", disabled=not (chosen and confirm), type="primary"):
                n = 0
                with S.guard(state):
                    for item in chosen:
                        stage, key = item.split("/", 1)
                        n += cache.remove(stage=stage, key_prefix=key)
                S.clear_caches()
                for k in ("cp_delete", "cp_confirm"):
                    st.session_state.pop(k, None)
                st.session_state["cp_message"] = f"Deleted {n} entr{'y' if n == 1 else 'ies'}."
                st.rerun()
            if "cp_message" in st.session_state:
                st.success(st.session_state.pop("cp_message"))
    if os.environ.get("ALIGNMENT_CACHE") is None:
        st.caption("Set ALIGNMENT_CACHE to use another cache folder.")
