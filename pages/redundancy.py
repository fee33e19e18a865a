"""Redundancy: links per voxel and per AN, Dice overlap of the atoms' BN maps, lesion curves."""

import numpy as np
import streamlit as st

from alignment import summaries
from alignment.conventions import subjects_of
from alignment.figures import heatmap_figure, lesion_curve_figure, links_per_an_figure
import ui as S

state = S.page("Redundancy", caption="How many atoms reach each voxel, how many voxels each AN reaches, how much "
                                     "the atoms' brain maps overlap (beside how collinear the atoms are), and how "
                                     "encoding degrades when ANs are removed.",
               methods_of=('Neuron-level mapping', 'Redundancy', 'Lesion curve'))
study, avail = S.open_or_stop(state)
key = state.layer_key()
if not avail.has(key, "glm", state.subject):
    mapped = avail.layers(state.model, state.branch, state.kind, state.condition, stage="glm")
    st.info(f"No neuron-level mapping (GLM) results for {S.describe(state)}."
            + (f" Mapped layers of this branch: {', '.join(map(str, mapped))}." if mapped else ""))
    st.stop()
subjects = subjects_of(study, state.subject)


@st.fragment
def maps():
    with S.guard(state) as g:
        red = S.summary("redundancy_across_subjects", state, state.subject, key, state.fdr_q)
    if g.failed:
        return
    n_subj = red["n_subjects"]
    st.caption("Links from the joint GLM: all atoms in one model, so an atom is linked to a voxel when it "
               "explains the voxel given the other atoms.")
    lpv = red["links_per_voxel"]
    shown = np.where(lpv > 0, lpv, np.nan)
    fig = S.brain_figure(shown, state, cmap="viridis", symmetric=False, vmin=0, label="atoms",
                         title=f"Atoms significantly linked per voxel — {S.describe(state)}"
                               + (f" (mean of {n_subj} subjects)" if n_subj > 1 else ""))
    S.plot(fig, key="re-map")
    S.export_buttons(fig, f"redundancy_links_per_voxel_{state.model}_{state.branch}_L{state.layer}",
                     map_values=lpv, map_names=["atoms per voxel"])
    marginal = red["marginal_links_per_voxel"]
    if marginal is not None:
        linked, linked_m = lpv[lpv > 0], marginal[marginal > 0]
        c1, c2 = st.columns(2)
        c1.metric("Atoms per linked voxel, joint GLM", f"{float(np.mean(linked)) if linked.size else 0:.2f}",
                  help=f"{linked.size:,} voxels linked to at least one atom")
        c2.metric("Atoms per linked voxel, marginal GLMs", f"{float(np.mean(linked_m)) if linked_m.size else 0:.2f}",
                  help=f"{linked_m.size:,} voxels; one GLM per atom, as the AN ranking of the other pages reads "
                       "them: a voxel driven by one atom is also linked to every atom correlated with it, "
                       "so this count overstates redundancy")

    c1, c2 = st.columns(2)
    lpa = red["links_per_an"]
    with c1:
        S.plot(links_per_an_figure(lpa, n_subj), key="re-hist")
        st.caption(f"{int((lpa > 0).sum()):,} of {lpa.size:,} AN×subject pairs reach at least one BN; "
                   f"median {float(np.median(lpa)):.0f}.")
    dice, used = red["dice"], np.flatnonzero(red["atom_sizes"] > 0)
    with c2:
        if used.size < 2:
            st.info("Fewer than two atoms have significant BNs: no overlap to show.")
        else:
            sub = dice[np.ix_(used, used)]
            hm = heatmap_figure(sub, [f"a{k}" for k in used], [f"a{k}" for k in used], cmap="viridis",
                                symmetric=False, zmin=0, zmax=1, title="Dice overlap of atoms' BN maps",
                                colorbar_title="Dice", height=380)
            S.plot(hm, key="re-dice")
            off = sub[~np.eye(len(used), dtype=bool)]
            st.caption(f"{used.size} atoms with significant BNs; mean off-diagonal Dice "
                       f"{float(np.nanmean(off)):.3f}.")
    collinearity(red, used)


def collinearity(red, used):
    """The atoms' collinearity beside the links: max |corr| with another atom and VIF in the GLM design."""
    import pandas as pd

    max_corr, vif = np.asarray(red["max_corr"]), np.asarray(red["vif"])
    if np.isnan(max_corr).all():
        st.info("This dictionary was cached without its collinearity; recompute the atoms to see it.")
        return
    c1, c2, c3 = st.columns(3)
    c1.metric("Max |corr| between atoms", f"{float(np.max(max_corr)):.2f}",
              help="largest |Pearson r| between two HRF-convolved atom regressors of this layer")
    c2.metric("Median VIF", f"{float(np.median(vif)):.2f}",
              help="variance inflation factor of each atom in the GLM design (atoms, drift, run intercepts): "
                   "1 / (1 − R²) of the atom on every other column")
    c3.metric("Max VIF", f"{float(np.max(vif)):.1f}")
    table = pd.DataFrame({"atom": [f"a{k}" for k in range(vif.size)], "max |corr|": max_corr, "VIF": vif,
                          "significant BNs": red["atom_sizes"]})
    with st.expander("Per atom: collinearity and significant BNs"):
        st.dataframe(table, hide_index=True, width="stretch")
    st.caption(f"{int((vif > 10).sum())} of {vif.size} atoms have VIF > 10"
               + (f"; {int((vif[used] > 10).sum())} of the {used.size} atoms with BNs." if used.size else ".")
               + " A high VIF means the joint GLM can hardly tell that atom from the others: its links are "
                 "few because its effect is shared, not because the code is sparse.")


maps()

st.subheader("Lesion curve")
st.caption("Held-out encoding r on the layer's significant voxels when a growing fraction of ANs is removed: at "
           "random (mean ± SD of 3 orders) vs the ANs reaching most BNs first, ranked for each held-out run by a "
           "dictionary + GLM of the other runs only (cross-validated). Computed on demand, then cached.")
subj = subjects[0]
if len(subjects) > 1:
    subj = st.selectbox("Subject for the lesion curve", subjects, key="re_lesion_subject",
                        format_func=lambda s: f"sub-{s}")


@st.fragment
def lesion_view():
    with S.guard(state) as g:
        res = summaries.lesion(study, subj, key, state.fdr_q)
    if g.failed:
        return
    if res is None:
        st.info("Not computed yet for this layer and subject.")
        if st.button("Compute the lesion curve", key="re_lesion_go", type="primary"):
            with S.guard(state) as g2, st.spinner("Fitting ridge models without the lesioned ANs …"):
                res = summaries.lesion(study, subj, key, state.fdr_q, compute=True)
            if g2.failed or res is None:
                return
        else:
            return
    fig = lesion_curve_figure(res, title=f"Lesion curve — {S.describe(state, subject=subj)} "
                                         f"({res['n_voxels']} voxels)")
    S.plot(fig, key="re-lesion")
    import pandas as pd

    S.export_buttons(fig, f"lesion_{state.model}_{state.branch}_L{state.layer}_sub-{subj}",
                     table=pd.DataFrame({k: v for k, v in res.items() if k != "n_voxels"}))


lesion_view()
