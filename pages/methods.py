"""Methods: the whole methods document (docs/methods.md), what every map and number means."""

import streamlit as st

import ui as S
from ui.view import METHODS_FILE

S.page("Methods", caption="The estimator, what is cross-validated and what is in-sample, the null and the "
                          "assumptions of every analysis. Each page opens the sections it draws from.")
st.markdown(METHODS_FILE.read_text(encoding="utf-8"))
