"""Plotly figure builders (pure functions, no Streamlit).

- :mod:`~alignment.figures.brain` -- the cortical surface (3D; a :class:`SurfaceScene` the app
  draws with WebGL and the exports with plotly) and the clickable flat map (2D);
- :mod:`~alignment.figures.charts` -- generic charts: layer curves, bars, time courses,
  heatmaps, histograms;
- :mod:`~alignment.figures.analyses` -- figures of single analyses' results (integration
  sites, redundancy, lesion curves);
- :mod:`~alignment.figures.theme` -- one look for all of them (and a presentation mode), the
  palette and the colour maps.

Meshes and the grayordinate ↔ vertex maps they draw on come from :mod:`alignment.spaces`,
network colours from :mod:`alignment.atlases`.
"""

from alignment.figures.analyses import integration_scatter_figure, lesion_curve_figure, links_per_an_figure
from alignment.figures.brain import (
    CAMERAS,
    SurfaceScene,
    boundary_mask,
    flat_map_figure,
    flat_map_points,
    scene_figure,
    surface_figure,
    surface_scene,
)
from alignment.figures.charts import (
    bar_figure,
    heatmap_figure,
    histogram_figure,
    layer_curve_figure,
    timecourse_figure,
)
from alignment.figures.theme import PALETTE, apply_theme, figure_json_size

__all__ = [
    "CAMERAS",
    "PALETTE",
    "SurfaceScene",
    "apply_theme",
    "bar_figure",
    "boundary_mask",
    "figure_json_size",
    "flat_map_figure",
    "flat_map_points",
    "heatmap_figure",
    "histogram_figure",
    "integration_scatter_figure",
    "layer_curve_figure",
    "lesion_curve_figure",
    "links_per_an_figure",
    "scene_figure",
    "surface_figure",
    "surface_scene",
    "timecourse_figure",
]
