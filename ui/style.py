"""CSS of the app's presentation mode."""

from __future__ import annotations

__all__ = ["presentation_css"]


def presentation_css() -> str:
    """CSS that hides Streamlit's chrome (header, toolbar, menu, footer, sidebar collapse)."""
    return """<style>
header[data-testid="stHeader"], div[data-testid="stToolbar"], div[data-testid="stDecoration"],
div[data-testid="stStatusWidget"], #MainMenu, footer,
button[data-testid="stBaseButton-headerNoPadding"], div[data-testid="stSidebarCollapseButton"],
div[data-testid="stSidebarCollapsedControl"], div[data-testid="stAppDeployButton"] {display: none !important;}
.block-container, div[data-testid="stMainBlockContainer"] {padding-top: 1.2rem !important; max-width: 100% !important;}
html, body, [data-testid="stAppViewContainer"] {font-size: 19px;}
h1 {font-size: 2.6rem !important;} h2 {font-size: 2.0rem !important;} h3 {font-size: 1.6rem !important;}
</style>"""
