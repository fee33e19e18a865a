"""Compare: two (subject, model, branch, layer, kind, condition) views side by side and their difference."""

import numpy as np
import pandas as pd
import streamlit as st

from alignment.conventions import GROUP
from alignment.figures import bar_figure
from alignment.pipeline import LayerKey
import ui as S

state = S.page("Compare", caption="Two views of the encoding maps side by side; the difference is A − B.",
               methods_of=('Encoding maps', 'Group maps'))
study, avail = S.open_or_stop(state)

metric = st.radio("Metric", ("r", "significant r", "-log10 q"), horizontal=True,
                  index=("r", "significant r", "-log10 q").index(state.metric)
                  if state.metric in ("r", "significant r", "-log10 q") else 0, key="cmp_metric")
subjects = list(avail.subjects)
subj_opts = ([GROUP] if len(subjects) > 1 else []) + subjects


def selector(col, tag: str, default: dict) -> tuple[str, LayerKey]:
    """Selection widgets for one view; ``default`` holds the starting values."""
    ss = st.session_state

    def pick(name, label, options, fallback, **kw):
        k = f"cmp_{tag}_{name}"
        if ss.get(k) not in options:
            ss[k] = fallback if fallback in options else options[0]
        return col.selectbox(label, options, key=k, **kw)

    col.markdown(f"**View {tag}**")
    subject = pick("subject", "Subject", subj_opts, default["subject"],
                   format_func=lambda s: "group" if s == GROUP else f"sub-{s}")
    model = pick("model", "Model", avail.models(), default["model"])
    branch = pick("branch", "Branch", avail.branches(model), default["branch"])
    kind = pick("kind", "AN kind", avail.kinds(model, branch), default["kind"])
    cond = pick("condition", "Condition", avail.conditions(model, branch, kind), default["condition"])
    layers = avail.layers(model, branch, kind, cond)
    layer = pick("layer", "Layer", layers, default["layer"])
    return subject, LayerKey(model, branch, int(layer), kind, cond)


base = dict(subject=state.subject, model=state.model, branch=state.branch, kind=state.kind,
            condition=state.condition, layer=state.layer)
layers_here = avail.layers(state.model, state.branch, state.kind, state.condition)
other = [x for x in layers_here if x != state.layer]
base_b = dict(base, layer=other[-1] if other else state.layer)
ca, cb = st.columns(2)
a = selector(ca, "A", base)
b = selector(cb, "B", base_b)


@st.fragment
def view():
    with S.guard(state) as g:
        ma, mb, diff = S.summary("compare_maps", state, a, b, metric, state.fdr_q, with_avail=True)
        lim = max(float(np.nanmax(np.abs(ma.values))) if np.isfinite(ma.values).any() else 0,
                  float(np.nanmax(np.abs(mb.values))) if np.isfinite(mb.values).any() else 0) or None
        sym = metric != "-log10 q"
        kw = dict(cmap=ma.cmap, symmetric=sym, vmin=(-lim if sym else 0) if lim else None, vmax=lim,
                  label=ma.label, height=340, hover=False)
        fa = S.brain_figure(ma.values, state, title=f"A: {S.describe(state, a[1], a[0])}", **kw)
        fb = S.brain_figure(mb.values, state, title=f"B: {S.describe(state, b[1], b[0])}", **kw)
        fd = S.brain_figure(diff, state, cmap="RdBu_r", label=f"Δ {metric}", height=400,
                            title=f"A − B ({metric})")
    if g.failed:
        return
    c1, c2 = st.columns(2)
    with c1:
        S.plot(fa, key="cmp-a")
    with c2:
        S.plot(fb, key="cmp-b")
    S.plot(fd, key="cmp-diff")
    S.export_buttons(fd, "compare_difference", map_values=np.stack([ma.values, mb.values, diff]),
                     map_names=[f"A {S.describe(state, a[1], a[0])}", f"B {S.describe(state, b[1], b[0])}", "A - B"])
    atlas = S.get_atlas(state)
    from alignment.networks import network_summary

    rows = []
    for tag, m in (("A", ma), ("B", mb)):
        t = network_summary(m.r, m.significant, atlas)
        t = t[t.level == "group"]
        rows.append(t.assign(view=tag))
    table = pd.concat(rows, ignore_index=True)
    bfig = bar_figure(table, x="name", y="mean_r", color="view", x_title="", y_title="mean r",
                      colors={"A": "#4c72b0", "B": "#dd8452"}, title="Mean r per network group", height=340)
    S.plot(bfig, key="cmp-bars")
    S.export_buttons(bfig, "compare_networks", table=table)


view()
