"""Page chrome and output: the header, the demo banner, plots in the app's look, exports."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import streamlit as st

from ui.data import get_atlas, get_available, get_study
from ui.errors import guard
from ui.sidebar import current
from ui.view import ViewState, methods_sections

__all__ = ["brain_figure", "demo_banner", "export_buttons", "methods", "open_or_stop", "page", "plot"]


def demo_banner(state: ViewState | None = None) -> None:
    """An ``st.info`` saying that the simulated demo is shown (every page calls it)."""
    state = state or current()
    if state.is_demo:
        st.info("**Simulated demo.** These results come from a simulated movie-fMRI experiment with "
                   "random-weight demo models and planted ground truth — not real brain data.",
                   icon=":material/science:")


def plot(fig, key: str, state: ViewState | None = None, **kwargs):
    """``st.plotly_chart(fig, theme=None, ...)`` with the presentation theme when it is on; a
    cortical map (:class:`~alignment.figures.SurfaceScene`, from :func:`brain_figure`) is drawn by
    the WebGL view of :mod:`ui.surface`.

    ``kwargs`` go to ``st.plotly_chart`` (e.g. ``on_select="rerun"``, ``selection_mode``);
    default width ``"stretch"``. Returns what ``st.plotly_chart`` (or the view) returns.
    """
    from alignment.figures import SurfaceScene

    state = state or current()
    if isinstance(fig, SurfaceScene):
        from ui.surface import show_surface

        return show_surface(fig, key, presentation=state.presentation)
    if state.presentation:
        import plotly.graph_objects as go

        from alignment.figures import apply_theme

        fig = apply_theme(go.Figure(fig), presentation=True)
    # error bands (fill="toself") draw as lines only: plotly's default mode for traces with
    # fewer than 20 points is "lines+markers", which scatters stray dots along the band edges
    fig.update_traces(mode="lines", selector=dict(type="scatter", fill="toself"))
    kwargs.setdefault("width", "stretch")
    kwargs.setdefault("config", {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}})
    return st.plotly_chart(fig, theme=None, key=key, **kwargs)


def page(title: str, state: ViewState | None = None, caption: str | None = None,
         methods_of: tuple[str, ...] = ()) -> ViewState:
    """Page header: title, the demo banner, an optional caption and the methods of what the page
    shows (sections of docs/methods.md, see :func:`methods`). Returns the view state."""
    st.set_page_config(page_title=f"{title} · VLM ↔ brain alignment", page_icon="🧠", layout="wide")
    state = state or current()
    st.title(title)
    demo_banner(state)
    if caption:
        st.caption(caption)
    if methods_of:
        methods(methods_of)
    return state


@st.cache_data(show_spinner=False)
def _sections() -> dict[str, str]:
    return methods_sections()


def methods(headings: tuple[str, ...]) -> None:
    """A collapsed box with the named sections of the methods document and a link to all of it."""
    sections = _sections()
    with st.expander("Methods: what this page shows and how it is tested", icon=":material/menu_book:"):
        for heading in headings:
            st.markdown(f"**{heading}**\n\n{sections[heading]}")
        st.page_link("pages/methods.py", label="All methods", icon=":material/menu_book:")


def open_or_stop(state: ViewState):
    """(study, availability) of the view, or an ``st.error`` and ``st.stop()``."""
    with guard(state) as g:
        study = get_study(state)
        avail = get_available(state)
    if g.failed:
        st.stop()
    if not avail.models():
        st.info("The cache holds no encoding results for this dataset yet. Compute them on the **Compute** page.")
        st.stop()
    return study, avail


def brain_figure(values, state: ViewState, *, title: str = "", cmap="RdBu_r", symmetric: bool = True,
                 vmin=None, vmax=None, label: str = "", height: int = 430, hover: bool = True,
                 camera: str = "lateral", surface: str | None = None, outlines: bool = True):
    """:func:`alignment.figures.surface_scene` of a (V,) map on the view's surface and atlas
    outlines: :func:`plot` draws it, :func:`export_buttons` writes it as a plotly figure."""
    from alignment.figures import surface_scene

    lab = get_atlas(state).labels if outlines else None
    return surface_scene(values, surface or state.surface, cmap=cmap, symmetric=symmetric, vmin=vmin, vmax=vmax,
                         title=title, outlines=lab, colorbar_title=label, height=height, hover=hover,
                         camera=camera)


def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))
    return keep.strip("_") or "figure"


def _dscalar_bytes(values, names) -> bytes:
    from alignment.export import write_dscalar

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "map.dscalar.nii")
        write_dscalar(path, values, names=names)
        return Path(path).read_bytes()


def _gifti_zip(values, names, base: str) -> bytes:
    from alignment.export import write_gifti

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_gifti(os.path.join(tmp, base), values, names=names)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for p in paths:
                z.write(p, os.path.basename(p))
        return buf.getvalue()


def _figure_bytes(fig, fmt: str) -> bytes:
    from alignment.export import figure_bytes
    from alignment.figures import SurfaceScene, scene_figure

    surface = isinstance(fig, SurfaceScene)
    if surface:
        fig = scene_figure(fig)
    state = st.session_state.get("_view_state")
    if state is not None and state.presentation:
        import plotly.graph_objects as go

        from alignment.figures import apply_theme
        from alignment.figures.theme import font_sizes

        fig = apply_theme(go.Figure(fig), presentation=True)
        if surface:
            fig.update_layout(title_font_size=font_sizes(True, long_title=True)[1])
    return figure_bytes(fig, fmt)


def export_buttons(fig=None, name: str = "figure", table=None, map_values=None, map_names=None) -> None:
    """Download buttons for a view, in an "Export" popover.

    Parameters
    ----------
    fig : plotly Figure or SurfaceScene, optional
        PNG and SVG (kaleido + local chromium; a readable note when there is none), standalone
        HTML. Files are produced (a scene drawn with plotly) only when the button is clicked.
    name : str
        Base file name.
    table : pandas.DataFrame, optional
        CSV.
    map_values : ndarray, shape (V,) or (M, V), optional
        CIFTI dscalar (.dscalar.nii) and GIfTI (.func.gii, both hemispheres, zipped).
    map_names : sequence of str, optional
        Names of the maps inside the files.
    """
    from alignment.export import find_chromium

    base = _safe_name(name)
    pop = st.popover("Export", icon=":material/download:")
    with pop:
        if fig is not None:
            if find_chromium() is None:
                st.caption("PNG / SVG export needs a local chromium (Debian package `chromium`, or set "
                           "ALIGNMENT_CHROMIUM); HTML export works without it.")
            else:
                st.download_button("PNG (static image)", lambda f=fig: _figure_bytes(f, "png"),
                                   file_name=f"{base}.png", mime="image/png", key=f"dl-{base}-png",
                                   on_click="ignore")
                st.download_button("SVG (vector)", lambda f=fig: _figure_bytes(f, "svg"),
                                   file_name=f"{base}.svg", mime="image/svg+xml", key=f"dl-{base}-svg",
                                   on_click="ignore")
            st.download_button("HTML (interactive, standalone)", lambda f=fig: _figure_bytes(f, "html"),
                               file_name=f"{base}.html", mime="text/html", key=f"dl-{base}-html",
                               on_click="ignore")
        if table is not None:
            st.download_button("CSV (table)", lambda t=table: t.to_csv(index=False).encode("utf-8"),
                               file_name=f"{base}.csv", mime="text/csv", key=f"dl-{base}-csv", on_click="ignore")
        if map_values is not None:
            import numpy as np

            vals = np.asarray(map_values, np.float32)
            names = list(map_names) if map_names is not None else None
            st.download_button("CIFTI dscalar (Workbench)", lambda: _dscalar_bytes(vals, names),
                               file_name=f"{base}.dscalar.nii", mime="application/octet-stream",
                               key=f"dl-{base}-dscalar", on_click="ignore")
            st.download_button("GIfTI (.func.gii, L + R, zip)", lambda: _gifti_zip(vals, names, base),
                               file_name=f"{base}_gifti.zip", mime="application/zip", key=f"dl-{base}-gifti",
                               on_click="ignore")
