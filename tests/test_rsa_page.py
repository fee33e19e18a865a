"""The Concept RSA page (AppTest): curves, tables and RDMs of cached results on a tiny concept
dataset; a clear message, not a traceback, when nothing is cached."""

import numpy as np
import pytest

import alignment  # noqa: F401
from alignment.cli import main
from rsa_fixtures import make_concept_dataset, write_pointer, write_rsa_config
from test_app import APP, navigation_mode, no_spawn  # noqa: F401 - run app.py on every rerun, as the server does

MODELS = ["random:bert:tiny", "random:hf-clip:tiny"]
TIMEOUT = 300


@pytest.fixture(scope="module")
def concept_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("rsa_page")
    make_concept_dataset(root)
    pointer = write_pointer(root)
    config = write_rsa_config(root, pointer, MODELS)
    assert main(["--cache", str(root / "cache"), "run", config]) == 0
    return root, pointer


def _app(pointer, cache, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ALIGNMENT_CACHE", str(cache))
    monkeypatch.delenv("ALIGNMENT_DATA_ROOTS", raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["dataset"] = pointer
    at.run()
    return at.switch_page("pages/rsa.py").run()


def test_page_shows_cached_rsa(concept_cache, monkeypatch):
    root, pointer = concept_cache
    at = _app(pointer, root / "cache", monkeypatch)
    assert not at.exception, [e.message for e in at.exception]
    assert at.title[0].value == "Concept RSA"
    assert at.multiselect(key="rsa_networks").value == ["languageLH", "visual"]
    assert len(at.dataframe) == 2  # the layer table and the model × model table
    layers = at.dataframe[0].value
    assert set(layers["model"]) == {"bert:tiny text", "hf-clip:tiny text"}
    from scipy.stats import false_discovery_control

    assert np.allclose(layers["q_all"], false_discovery_control(layers["p"].to_numpy(), method="bh"))
    charts = [e for e in at.get("plotly_chart")]
    assert len(charts) == 2 + 2  # a layer curve per network, brain and model RDMs
    assert "concept" in charts[2].proto.spec or "animal0" in charts[2].proto.spec
    assert any("ordered by category" in e.value for e in at.caption)
    assert not any("Simulated data" in e.value for e in at.info)
    at.multiselect(key="rsa_networks").set_value(["visual"]).run()
    assert len(at.get("plotly_chart")) == 1 + 2


def test_page_says_when_data_are_simulated(concept_cache, monkeypatch):
    from alignment.data import GROUND_TRUTH_FILE

    root, pointer = concept_cache
    (root / GROUND_TRUTH_FILE).write_text("{}\n")
    try:
        at = _app(pointer, root / "cache", monkeypatch)
    finally:
        (root / GROUND_TRUTH_FILE).unlink()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Simulated data" in e.value for e in at.info)


def test_concepts_ordered_by_category(tmp_path):
    from alignment.data import load_dataset
    from alignment.rsa_summary import category_order, concept_categories
    from rsa_fixtures import CATEGORIES_SMALL, CONCEPTS_SMALL

    make_concept_dataset(tmp_path)
    ds = load_dataset(write_pointer(tmp_path))
    cats = concept_categories(ds)
    assert cats == [CATEGORIES_SMALL[c] for c in ds.concepts]
    ordered = [ds.concepts[i] for i in category_order(ds.concepts, cats)]
    assert ordered[:4] == ["animal0", "animal1", "animal2", "animal3"] and ordered[4:8] == [f"food{i}" for i in range(4)]
    assert category_order(["b", "a", "c"]).tolist() == [1, 0, 2]
    assert sorted(ordered) == sorted(CONCEPTS_SMALL)


def test_page_without_results_says_so(tmp_path, monkeypatch):
    make_concept_dataset(tmp_path)
    at = _app(write_pointer(tmp_path), tmp_path / "cache", monkeypatch)
    assert not at.exception, [e.message for e in at.exception]
    assert any("no concept-RSA results" in e.value for e in at.info)


def _movie_page(tmp_path, monkeypatch):
    """The page on a one-run movie dataset."""

    root = tmp_path / "movie"
    (root / "stimuli").mkdir(parents=True)
    (root / "sub-01").mkdir()
    (root / "dataset.toml").write_text('[dataset]\nname = "movie"\ntr = 1.0\nspace = "fsaverage5"\n\n'
                                       '[[runs]]\nid = "r1"\nn_trs = 6\n')
    (root / "stimuli" / "r1.tsv").write_text("tr\tframe\tcaption\tsegment\n" +
                                            "".join(f"{t}\t\ta dog\tclip\n" for t in range(6)))
    np.save(root / "sub-01" / "r1.npy", np.random.default_rng(0).standard_normal((6, 20484)).astype(np.float32))
    return _app(str(root), tmp_path / "cache", monkeypatch)


def test_page_on_a_movie_dataset_says_it_needs_concepts(tmp_path, monkeypatch):
    at = _movie_page(tmp_path, monkeypatch)
    assert not at.exception, [e.message for e in at.exception]
    assert any("needs a concept-wise dataset" in e.value for e in at.info)


def test_the_movie_page_opens_the_concept_demo(tmp_path, monkeypatch, no_spawn):
    """The button switches to the simulated concept demo; on a cache without the demo that starts
    the demo's background build (which makes the concept demo after the movie demo)."""
    at = _movie_page(tmp_path, monkeypatch)
    monkeypatch.setenv("ALIGNMENT_DEMO_SMALL", "1")
    next(b for b in at.button if b.label == "Open the simulated concept demo").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.query_params["dataset"] == "demo-concepts"
    assert len(no_spawn) == 1 and "--background" in no_spawn[0]
    assert any("Preparing the simulated demo in the background" in e.value for e in at.info)


def test_page_on_the_concept_demo(demo_cache, monkeypatch):
    """The demo's concept dataset (built with the small demo): every paradigm, both models, the
    four networks' curves, said to be simulated, nothing failing."""
    monkeypatch.setenv("ALIGNMENT_DEMO_SMALL", "1")
    at = _app("demo-concepts", demo_cache, monkeypatch)
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any("Simulated data" in e.value for e in at.info)
    assert set(at.radio(key="rsa_paradigm").options) == {"pictures", "sentences", "wordclouds"}
    assert at.multiselect(key="rsa_networks").value == ["languageLH", "languageRH", "visual", "dmn"]
    assert {m.split(" ")[0] for m in at.dataframe[0].value["model"]} == {"minilm", "clip:demo-tiny"}
    assert len(at.get("plotly_chart")) == 4 + 2
