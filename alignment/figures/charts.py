"""Generic charts: layer curves, bars, time courses, heatmaps, histograms.

Long-format pandas tables in, plotly figures out (in the look of
:func:`alignment.figures.theme.apply_theme`). Network names get their atlas colours.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from alignment.conventions import check_choice
from alignment.figures.theme import PALETTE, apply_theme, color_limits, color_map, colorscale, rgba

__all__ = [
    "bar_figure",
    "heatmap_figure",
    "histogram_figure",
    "layer_curve_figure",
    "timecourse_figure",
]


def _summarise(df, keys: list[str], y: str, error):
    """Mean of ``y`` per key group with lo/hi bounds from ``error``."""
    import pandas as pd
    from scipy import stats

    lo_hi = None
    if isinstance(error, (tuple, list)):
        if len(error) != 2:
            raise ValueError("error as columns must be a (low, high) pair")
        lo_hi = tuple(error)
    elif error == "ci" and {f"{y}_lo", f"{y}_hi"} <= set(df.columns):
        lo_hi = (f"{y}_lo", f"{y}_hi")
    elif error not in (None, "ci", "sem", "sd"):
        raise ValueError(f"error must be None, 'ci', 'sem', 'sd' or a (low, high) column pair; "
                         f"got {error!r}")
    for c in [y, *keys, *(lo_hi or ())]:
        if c not in df.columns:
            raise ValueError(f"column {c!r} not in the dataframe (columns: {list(df.columns)})")
    grouped = df.groupby(keys, sort=False, dropna=False)
    if lo_hi is not None:
        agg = grouped.agg(mean=(y, "mean"), lo=(lo_hi[0], "mean"), hi=(lo_hi[1], "mean"))
        return agg.reset_index()
    agg = grouped[y].agg(["mean", "std", "count"]).reset_index()
    if error is None:
        agg["lo"] = agg["hi"] = np.nan
        return agg
    n = agg["count"].to_numpy(float)
    sd = agg["std"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if error == "sd":
            half = sd
        elif error == "sem":
            half = sd / np.sqrt(n)
        else:
            half = stats.t.ppf(0.975, np.maximum(n - 1, 1)) * sd / np.sqrt(n)
    half = np.where(n > 1, half, np.nan)
    agg["lo"] = agg["mean"] - half
    agg["hi"] = agg["mean"] + half
    return pd.DataFrame(agg)


def layer_curve_figure(df, x: str = "layer", y: str = "value", color: str | None = "network",
                       error="ci", facet: str | None = None, *, colors: Mapping | None = None,
                       title: str = "", x_title: str | None = None, y_title: str | None = None,
                       facet_wrap: int = 4, height: int | None = None):
    """Curves of a quantity across layers, one per ``color`` group, with an error band.

    Parameters
    ----------
    df : pandas.DataFrame
        Long format: one row per (facet, color, x[, repeat]). Several rows per point (e.g.
        subjects) are averaged and give the band.
    x, y : str
        Columns of the x position (layer) and of the value.
    color : str or None
        Column naming the curves (network names get Cole-Anticevic colours).
    error : {"ci", "sem", "sd", None} or (low_col, high_col)
        Band: 95% t-interval of the mean / standard error / standard deviation over the rows
        of a point; with one row per point, ``"ci"`` uses columns ``{y}_lo`` / ``{y}_hi`` when
        present; a column pair gives the bounds directly.
    facet : str, optional
        Column splitting the figure into panels (shared y axis).
    colors : dict, optional
        color value → colour.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    keys = [k for k in (facet, color, x) if k is not None]
    agg = _summarise(df, keys, y, error)
    facets = list(dict.fromkeys(agg[facet])) if facet else [None]
    groups = list(dict.fromkeys(agg[color])) if color else [None]
    cmap = color_map(groups, colors)
    ncols = min(len(facets), facet_wrap)
    nrows = int(np.ceil(len(facets) / ncols))
    fig = make_subplots(rows=nrows, cols=ncols, shared_yaxes=True,
                        subplot_titles=[str(f) for f in facets] if facet else None,
                        horizontal_spacing=0.04, vertical_spacing=0.12)
    for fi, fv in enumerate(facets):
        r, c = fi // ncols + 1, fi % ncols + 1
        sub = agg if fv is None else agg[agg[facet] == fv]
        for gv in groups:
            part = sub if gv is None else sub[sub[color] == gv]
            if part.empty:
                continue
            col = cmap[gv] if gv is not None else PALETTE[0]
            xs, ys = part[x].to_numpy(), part["mean"].to_numpy(float)
            lo, hi = part["lo"].to_numpy(float), part["hi"].to_numpy(float)
            name = str(gv) if gv is not None else y
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                fig.add_trace(go.Scatter(
                    x=np.concatenate([xs[ok], xs[ok][::-1]]),
                    y=np.concatenate([hi[ok], lo[ok][::-1]]),
                    fill="toself", fillcolor=rgba(col, 0.18), line=dict(width=0),
                    hoverinfo="skip", showlegend=False, legendgroup=name, name=name,
                ), row=r, col=c)
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines+markers", line=dict(color=col, width=2),
                marker=dict(size=6), name=name, legendgroup=name, showlegend=fi == 0,
                hovertemplate=f"{name}<br>{x} %{{x}}<br>{y} %{{y:.3f}}<extra></extra>",
            ), row=r, col=c)
    fig.update_xaxes(title_text=x_title if x_title is not None else x, row=nrows)
    fig.update_yaxes(title_text=y_title if y_title is not None else y, col=1)
    fig.update_layout(title=dict(text=title), height=height or max(360, 300 * nrows),
                      legend=dict(title=dict(text=color or "")), hovermode="closest")
    return apply_theme(fig)


def bar_figure(df, x: str, y: str, color: str | None = None, error=None, *,
               colors: Mapping | None = None, orientation: str = "v", barmode: str = "group",
               title: str = "", x_title: str | None = None, y_title: str | None = None,
               height: int | None = None):
    """Grouped bars (e.g. per network), optionally with error bars.

    Parameters
    ----------
    df : pandas.DataFrame
        Long format; several rows per bar are averaged.
    x, y : str
        Category column and value column (with ``orientation="h"`` the categories go on y).
    color : str, optional
        Column of the bar groups (network names get Cole-Anticevic colours). Without it the
        bars are coloured by ``x`` when its values are network names.
    error : {"ci", "sem", "sd", None} or (low_col, high_col)
        As in :func:`layer_curve_figure`.
    barmode : {"group", "stack", "overlay", "relative"}

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    check_choice("orientation", orientation, ("v", "h"))
    check_choice("barmode", barmode, ("group", "stack", "overlay", "relative"))
    keys = [k for k in (color, x) if k is not None]
    agg = _summarise(df, keys, y, error)
    groups = list(dict.fromkeys(agg[color])) if color else [None]
    fig = go.Figure()
    for gv in groups:
        part = agg if gv is None else agg[agg[color] == gv]
        cats = part[x].astype(str).to_numpy()
        means = part["mean"].to_numpy(float)
        if gv is None:
            cm = color_map(list(cats), colors)
            col = [cm[c] for c in cats]
        else:
            col = color_map(groups, colors)[gv]
        err = None
        lo, hi = part["lo"].to_numpy(float), part["hi"].to_numpy(float)
        if np.isfinite(lo).any():
            err = dict(type="data", symmetric=False, array=np.nan_to_num(hi - means),
                       arrayminus=np.nan_to_num(means - lo), thickness=1.2, width=3)
        xy = dict(x=cats, y=means) if orientation == "v" else dict(x=means, y=cats)
        errkw = {}
        if err is not None:
            errkw = {"error_y": err} if orientation == "v" else {"error_x": err}
        fig.add_trace(go.Bar(
            **xy, orientation=orientation, marker=dict(color=col),
            name=str(gv) if gv is not None else y,
            showlegend=gv is not None, **errkw,
            hovertemplate=("%{x}: %{y:.3f}" if orientation == "v" else "%{y}: %{x:.3f}")
                          + "<extra></extra>",
        ))
    xt = x_title if x_title is not None else x
    yt = y_title if y_title is not None else y
    fig.update_layout(title=dict(text=title), barmode=barmode, height=height or 380,
                      xaxis_title=xt if orientation == "v" else yt,
                      yaxis_title=yt if orientation == "v" else xt,
                      legend=dict(title=dict(text=color or "")))
    return apply_theme(fig)


def timecourse_figure(measured, predicted=None, segments: Sequence | None = None, tr: float = 1.0,
                      *, title: str = "", labels: tuple[str, str] = ("measured", "predicted"),
                      y_title: str = "BOLD (z)", rest_label: str = "rest", height: int = 320):
    """Measured and predicted time course of a voxel with the stimulus segments shaded.

    Parameters
    ----------
    measured : array-like, shape (T,)
    predicted : array-like, shape (T,), optional
    segments : sequence of (label, start, stop), optional
        TR indices, ``stop`` exclusive (e.g. clips, ``rest``, test-retest repeats). Segments
        alternate two light shades; ``rest`` segments stay white; labels are written on top.
    tr : float
        Seconds per TR (x axis in seconds).

    Returns
    -------
    plotly.graph_objects.Figure
        Pearson r of measured vs predicted in the legend entry of the prediction.
    """
    import plotly.graph_objects as go

    y = np.asarray(measured, float)
    if y.ndim != 1:
        raise ValueError(f"measured must be 1-D (T,), got {y.shape}")
    if not (np.isfinite(tr) and tr > 0):
        raise ValueError(f"tr must be a positive number, got {tr!r}")
    t = np.arange(len(y)) * float(tr)
    fig = go.Figure()
    hover = "t %{x:.1f} s<br>%{y:.3f}<extra>{}</extra>"
    fig.add_trace(go.Scatter(x=t, y=y.astype(np.float32), mode="lines", name=labels[0],
                             line=dict(color="#3a3a3a", width=1.4),
                             hovertemplate=hover.replace("{}", labels[0])))
    if predicted is not None:
        p = np.asarray(predicted, float)
        if p.shape != y.shape:
            raise ValueError(f"predicted has shape {p.shape}, measured {y.shape}")
        ok = np.isfinite(y) & np.isfinite(p)
        r = np.nan
        if ok.sum() > 2 and y[ok].std() > 0 and p[ok].std() > 0:
            r = float(np.corrcoef(y[ok], p[ok])[0, 1])
        name = labels[1] + (f" (r = {r:.2f})" if np.isfinite(r) else "")
        fig.add_trace(go.Scatter(x=t, y=p.astype(np.float32), mode="lines", name=name,
                                 line=dict(color="#d1495b", width=1.8),
                                 hovertemplate=hover.replace("{}", labels[1])))
    shapes, annotations = [], []
    shade = ("rgba(76,114,176,0.10)", "rgba(221,132,82,0.12)")
    k = 0
    for seg in segments or ():
        if len(seg) != 3:
            raise ValueError(f"segments must be (label, start, stop) triples; got {seg!r}")
        label, start, stop = seg
        if not (0 <= int(start) < int(stop) <= len(y)):
            raise ValueError(f"segment {seg!r} is outside 0..{len(y)} TRs or empty")
        x0, x1 = (int(start) - 0.5) * tr, (int(stop) - 0.5) * tr
        is_rest = str(label) == rest_label
        shapes.append(dict(type="rect", xref="x", yref="paper", x0=x0, x1=x1, y0=0, y1=1,
                           fillcolor="rgba(0,0,0,0)" if is_rest else shade[k % 2],
                           line=dict(width=0), layer="below"))
        shapes.append(dict(type="line", xref="x", yref="paper", x0=x0, x1=x0, y0=0, y1=1,
                           line=dict(color="rgba(0,0,0,0.25)", width=1, dash="dot"), layer="below"))
        if not is_rest:
            k += 1
            annotations.append(dict(x=(x0 + x1) / 2, y=1.0, xref="x", yref="paper", text=str(label),
                                    showarrow=False, yanchor="bottom",
                                    font=dict(color="#555555")))
    fig.update_layout(title=dict(text=title), shapes=shapes, annotations=annotations,
                      xaxis_title="time (s)", yaxis_title=y_title, height=height,
                      hovermode="x unified",
                      legend=dict(orientation="h", yanchor="bottom", y=1.08, x=0))
    return apply_theme(fig)


def heatmap_figure(matrix, x_labels: Sequence | None = None, y_labels: Sequence | None = None, *,
                   cmap="RdBu_r", zmin: float | None = None, zmax: float | None = None,
                   symmetric: bool = True, title: str = "", colorbar_title: str = "",
                   decimals: int = 3, show_values: bool = False, height: int | None = None):
    """Heatmap of a matrix (RDMs, Dice overlaps, layer × network tables).

    Parameters
    ----------
    matrix : array-like, shape (R, C)
    x_labels : sequence of length C, optional
    y_labels : sequence of length R, optional (first row at the top)
    symmetric : bool
        Colour limits ``±max|z|`` (default), else min/max.
    show_values : bool
        Write the values in the cells (small matrices).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    z = np.asarray(matrix, float)
    if z.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {z.shape}")
    if x_labels is not None and len(x_labels) != z.shape[1]:
        raise ValueError(f"{len(x_labels)} x_labels for {z.shape[1]} columns")
    if y_labels is not None and len(y_labels) != z.shape[0]:
        raise ValueError(f"{len(y_labels)} y_labels for {z.shape[0]} rows")
    zmin, zmax = color_limits(z, zmin, zmax, symmetric)
    xl = [str(s) for s in x_labels] if x_labels is not None else list(range(z.shape[1]))
    yl = [str(s) for s in y_labels] if y_labels is not None else list(range(z.shape[0]))
    kw = {}
    if show_values:
        kw = dict(texttemplate=f"%{{z:.{min(decimals, 3)}f}}")
    fig = go.Figure(go.Heatmap(
        z=np.round(z, decimals), x=xl, y=yl, colorscale=colorscale(cmap), zmin=zmin, zmax=zmax,
        colorbar=dict(title=dict(text=colorbar_title), thickness=14),
        hovertemplate=f"%{{y}} × %{{x}}<br>%{{z:.{decimals}f}}<extra></extra>", **kw,
    ))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=dict(text=title),
                      height=height or int(min(900, max(320, 60 + 22 * z.shape[0]))),
                      plot_bgcolor="white")
    return apply_theme(fig)


def histogram_figure(values, title: str = "", x_title: str = "value", *, bins: int = 41,
                     value_range: tuple[float, float] | None = (-1.0, 1.0), unit: str = "voxels",
                     color: str = PALETTE[4], height: int = 340):
    """Histogram of the finite values (e.g. an index over voxels), as bars of equal width.

    Parameters
    ----------
    values : array-like, shape (V,)
        NaN / infinite values are left out.
    bins : int
    value_range : (low, high) or None
        Range of the bins; None: from the smallest to the largest finite value.
    unit : str
        What is counted (y axis, hover).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if value_range is None:
        value_range = (float(v.min()), float(v.max())) if v.size else (-1.0, 1.0)
    counts, edges = np.histogram(v, bins=bins, range=value_range)
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centers, y=counts, marker_color=color, width=(edges[1] - edges[0]) * 0.95,
                           hovertemplate=f"{x_title} %{{x:.2f}}<br>%{{y}} {unit}<extra></extra>"))
    fig.update_layout(title=dict(text=title), xaxis_title=x_title, yaxis_title=unit, height=height, bargap=0)
    return apply_theme(fig)
