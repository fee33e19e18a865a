"""Figures of single analyses' results: integration sites, redundancy, lesion curves.

Each takes what :mod:`alignment.summaries` returns for the analysis and draws it in the look of
:func:`alignment.figures.theme.apply_theme`.
"""

from __future__ import annotations

import numpy as np

from alignment.figures.theme import PALETTE, apply_theme, rgba

__all__ = [
    "integration_scatter_figure",
    "lesion_curve_figure",
    "links_per_an_figure",
]


def integration_scatter_figure(maps: dict, n_max: int = 4000):
    """r of the VLM layer against the joint image+text baseline at the voxels the VLM predicts
    significantly: the integration sites plus a deterministic sample of the rest.

    Parameters
    ----------
    maps : dict
        :func:`alignment.summaries.integration_maps`: ``r_vlm``, ``r_joint``, ``sites`` and
        ``sig_vlm``, each (V,).
    n_max : int
        Most non-site voxels drawn (evenly spaced over the VLM-significant ones).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    joint = maps["r_joint"]
    sites = np.flatnonzero(maps["sites"] > 0)
    rest = np.flatnonzero(maps["sig_vlm"] & (maps["sites"] == 0))
    rest = rest[np.linspace(0, rest.size - 1, min(n_max, rest.size)).astype(int)] if rest.size else rest
    fig = go.Figure()
    fig.add_trace(go.Scattergl(x=joint[rest], y=maps["r_vlm"][rest], mode="markers", name="VLM significant",
                               marker=dict(size=3, color="#b0b0b0")))
    fig.add_trace(go.Scattergl(x=joint[sites], y=maps["r_vlm"][sites], mode="markers", name="integration sites",
                               marker=dict(size=5, color=PALETTE[3])))
    lo = float(np.nanmin([joint.min(), maps["r_vlm"].min()]))
    hi = float(np.nanmax([joint.max(), maps["r_vlm"].max()]))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(dash="dot", color="#606060"),
                             showlegend=False, hoverinfo="skip"))
    fig.update_layout(title=dict(text="VLM vs the joint baseline (held-out r, VLM-significant voxels)"), height=360,
                      xaxis_title="r joint image+text baseline", yaxis_title="r VLM")
    return apply_theme(fig)


def links_per_an_figure(links_per_an, n_subjects: int = 1):
    """Histogram of the number of significant BNs each AN reaches.

    Parameters
    ----------
    links_per_an : array-like, shape (N,) or (S·N,)
        BNs per AN (of every subject, concatenated, for a group).
    n_subjects : int
        Subjects pooled in ``links_per_an`` (labels the y axis).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    fig = go.Figure(go.Histogram(x=links_per_an, nbinsx=40, marker_color=PALETTE[0],
                                 hovertemplate="%{x} BNs<br>%{y} ANs<extra></extra>"))
    fig.update_layout(title=dict(text="BNs reached per AN"), xaxis_title="significant BNs linked to the AN",
                      yaxis_title="ANs" + (" (all subjects)" if n_subjects > 1 else ""), height=380, bargap=0.02)
    return apply_theme(fig)


def lesion_curve_figure(curve: dict, title: str = ""):
    """Encoding r as a growing share of ANs is removed: at random (mean ± SD) vs top-ranked first.

    Parameters
    ----------
    curve : dict
        :func:`alignment.summaries.lesion`: ``fractions``, ``random_mean``, ``random_sd``,
        ``ranked``, each (F,).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    fr = curve["fractions"] * 100
    fig = go.Figure()
    lo, hi = curve["random_mean"] - curve["random_sd"], curve["random_mean"] + curve["random_sd"]
    fig.add_trace(go.Scatter(x=np.concatenate([fr, fr[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself",
                             fillcolor=rgba(PALETTE[0], 0.18), line=dict(width=0), hoverinfo="skip",
                             showlegend=False))
    fig.add_trace(go.Scatter(x=fr, y=curve["random_mean"], mode="lines+markers", name="random ANs removed",
                             line=dict(color=PALETTE[0], width=2)))
    fig.add_trace(go.Scatter(x=fr, y=curve["ranked"], mode="lines+markers", name="top-ranked ANs removed first",
                             line=dict(color=PALETTE[3], width=2)))
    fig.update_layout(title=dict(text=title), xaxis_title="ANs removed (%)", yaxis_title="mean encoding r",
                      height=400)
    return apply_theme(fig)
