"""Streamlit entry point: ``streamlit run app.py`` (binds to 127.0.0.1, see .streamlit/config.toml).

Pages live in ``pages/`` and are listed in ``ui.PAGES``. The page menu and the global sidebar
(view state mirrored in the URL query string) are drawn here, before the page, so their values
survive page switches. The app's shell is the package :mod:`ui` beside ``pages/``.

Streamlit runs this file as ``__main__``, so a ``multiprocessing`` child started from the app's
process (spawn) re-imports it under another name: the app must not run there (it would start
the background demo build from that child).
"""

import streamlit as st

import ui as S


def main() -> None:
    st.set_page_config(page_title="VLM ↔ brain alignment", page_icon="🧠", layout="wide")

    default = next(iter(S.PAGES.values()))[0][0]
    navigation = st.navigation(
        {section: [st.Page(script, title=title, icon=icon, default=script == default) for script, title, icon in pages]
         for section, pages in S.PAGES.items()},
        position="hidden")  # the menu is S.page_menu(), drawn by S.sidebar()
    S.sidebar()
    navigation.run()


if __name__ == "__main__":
    main()
