"""Streamlit entry point: ``streamlit run app.py`` (binds to 127.0.0.1, see .streamlit/config.toml).

Pages live in ``pages/``; the global sidebar (view state mirrored in the URL query string) is
drawn here, before the page, so its values survive page switches. See
:mod:`alignment.app_state`.
"""

import os

import streamlit as st

from alignment import app_state as S

st.set_page_config(page_title="VLM ↔ brain alignment", page_icon="🧠", layout="wide")

HERE = os.path.dirname(os.path.abspath(__file__))


def _page(path: str, title: str, icon: str, **kw):
    return st.Page(path, title=title, icon=icon, **kw) if os.path.exists(os.path.join(HERE, path)) else None


sections = {
    "Explore": [
        _page("pages/overview.py", "Overview", ":material/neurology:", default=True),
        _page("pages/layers.py", "Layers", ":material/stacked_line_chart:"),
        _page("pages/polarity.py", "Polarity", ":material/exposure:"),
        _page("pages/modality.py", "Modality", ":material/image:"),
        _page("pages/redundancy.py", "Redundancy", ":material/join_inner:"),
        _page("pages/integration.py", "Integration sites", ":material/merge:"),
        _page("pages/compare.py", "Compare", ":material/compare:"),
    ],
    "Inspect": [
        _page("pages/voxel_inspector.py", "Voxel inspector", ":material/my_location:"),
        _page("pages/neuron_inspector.py", "Neuron inspector", ":material/hub:"),
    ],
    "Run": [
        _page("pages/compute.py", "Compute & cache", ":material/settings:"),
    ],
}
sections = {name: [p for p in pages if p is not None] for name, pages in sections.items()}
navigation = st.navigation({name: pages for name, pages in sections.items() if pages})
S.sidebar()
navigation.run()
