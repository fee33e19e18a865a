"""The run config's ``[rsa]`` table: checked by the schema, computed by ``python -m alignment run``,
exported by ``python -m alignment export-rsa`` and read back."""

import numpy as np
import pytest

import alignment  # noqa: F401
from alignment.cli import main
from alignment.config import ConfigError, RunConfig
from alignment.keys import RSAPlan
from rsa_fixtures import make_concept_dataset, write_pointer, write_rsa_config

MODELS = ["random:bert:tiny", "random:hf-clip:tiny"]


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    """A tiny concept dataset, its config and a cache the config was run into."""
    root = tmp_path_factory.mktemp("rsa_run")
    make_concept_dataset(root)
    config = write_rsa_config(root, write_pointer(root), MODELS,
                              'ablations = ["none", "noise"]\ncontrol = "random:roberta:tiny"\n')
    cache = root / "cache"
    assert main(["--cache", str(cache), "run", config]) == 0
    return root, config, cache


def test_rsa_table_is_read(tmp_path):
    path = write_rsa_config(tmp_path, "x", MODELS, 'networks = ["visual"]\nmetric = "correlation"\nsplit = "concepts"\n')
    plan = RunConfig.load(path).rsa
    assert plan == RSAPlan(models=tuple(MODELS), paradigms=("sentences",), networks=("visual",),
                           metric="correlation", split="concepts", n_perm=99, n_boot=30)
    assert RunConfig.load(path).models == ()


@pytest.mark.parametrize("extra, message", [
    ('metric = "manhattan"\n', "metric: unknown metric 'manhattan'"),
    ('ablations = ["blur"]\n', "ablations must be"),
    ('split = "runs"\n', "split: unknown split 'runs'"),
    ('seed = -1\n', "seed must be"),
    ('control = 3\n', "control must be a language-only model spec"),
    ('paradigm = ["sentences"]\n', "did you mean 'paradigms'"),
])
def test_rsa_table_checked(tmp_path, extra, message):
    path = write_rsa_config(tmp_path, "x", MODELS, extra)
    with pytest.raises(ConfigError, match=message) as err:
        RunConfig.load(path)
    assert "\n" not in str(err.value)


def test_a_config_needs_models_or_rsa(tmp_path):
    (tmp_path / "c.toml").write_text('[study]\ndataset = "x"\n')
    with pytest.raises(ConfigError, match=r"no \[\[models\]\] tables.*or an \[rsa\] table"):
        RunConfig.load(tmp_path / "c.toml")


def test_run_computes_rsa_of_every_model_branch_and_ablation(computed):
    from alignment.data import load_dataset
    from alignment.keys import RSACompareKey, RSAKey
    from alignment.pipeline import Study

    root, config, cache = computed
    study = Study(load_dataset(root / "pereira2018.toml"), cache, read_only=True)
    plan = RunConfig.load(config).rsa
    keys = [RSAKey(m, "text", "sentences", ablation, control=plan.control, n_perm=99, n_boot=30)
            for m, ablation in ((MODELS[0], "none"), (MODELS[1], "none"), (MODELS[1], "noise"))]
    for key in keys:
        assert study.has("rsa", key), key
        assert np.isfinite(study.get("rsa", key)["partial_rho"]).all()
    # the image tower sees one blank (or one noise) image for every sentence: left out
    assert not study.has("rsa", RSAKey(MODELS[1], "image", "sentences", control=plan.control, n_perm=99, n_boot=30))
    # the text-only model has no noise ablation
    assert not study.has("rsa", RSAKey(MODELS[0], "text", "sentences", "noise", control=plan.control, n_perm=99, n_boot=30))
    assert study.has("rsa_compare", RSACompareKey(tuple(keys[:2])))
    assert main(["--cache", str(cache), "run", config]) == 0  # a rerun finds everything cached


def test_run_on_a_movie_dataset_is_one_line(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "dataset.toml").write_text('[dataset]\nname = "m"\ntr = 1.0\nspace = "fsaverage5"\n'
                                                 '[[runs]]\nid = "r1"\nn_trs = 10\n')
    path = write_rsa_config(tmp_path, str(tmp_path / "d"), MODELS)
    assert main(["--cache", str(tmp_path / "cache"), "run", path]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error:") and "concept-wise dataset" in err


def test_export_reads_back(computed, tmp_path):
    import pandas as pd

    from alignment.analyses import rsa
    from alignment.data import load_dataset
    from alignment.keys import RSAKey
    from alignment.pipeline import Study
    from alignment.rsa_summary import LAYER_COLUMNS

    root, config, cache = computed
    out = tmp_path / "export"
    assert main(["--cache", str(cache), "export-rsa", config, "--out", str(out), "--format", "html"]) == 0
    study = Study(load_dataset(root / "pereira2018.toml"), cache, read_only=True)
    concepts = (out / "rdms" / "concepts.txt").read_text().split()
    assert concepts == study.dataset.concepts
    table = pd.read_csv(out / "rsa_layers.csv")
    assert tuple(table.columns) == LAYER_COLUMNS
    key = RSAKey(MODELS[0], "text", "sentences", control="random:roberta:tiny", n_perm=99, n_boot=30)
    entry = study.get("rsa", key)
    rows = table[(table.model == "bert:tiny text") & (table.ablation == "none") & (table.network == "visual")]
    np.testing.assert_allclose(rows.sort_values("layer")["rho"], entry["rho"][:, 1])
    np.testing.assert_allclose(rows.sort_values("layer")["q"], entry["q"][:, 1])
    assert list(rows.sort_values("layer")["layer_name"]) == ["emb", "L1", "L2", "L3"]
    assert set(table.ablation) == {"none", "noise"}
    model = np.load(out / "rdms" / "bert-tiny__text__sentences__none.npy", allow_pickle=False)
    assert model.shape == (4, 66)
    brain = np.load(out / "rdms" / "brain__sentences__visual.npy", allow_pickle=False)
    assert brain.shape == (3, 66)
    np.testing.assert_allclose(rsa.spearman(brain.mean(axis=0), model), entry["rho"][:, 1])
    diffs = pd.read_csv(out / "rsa_differences.csv")
    assert len(diffs) == 2 and set(diffs.columns) >= {"model_a", "model_b", "delta_rho", "p", "q"}
    assert (out / "layers__sentences__none__visual.html").stat().st_size > 1000
    # nothing computed: a config whose results are missing fails in one line
    other = write_rsa_config(tmp_path, str(root / "pereira2018.toml"), MODELS, "seed = 7\n")
    assert main(["--cache", str(cache), "export-rsa", other, "--out", str(tmp_path / "x")]) == 1


def test_cache_listing_names_rsa_results(computed, capsys):
    from dataclasses import asdict

    from alignment.catalog import build
    from alignment.keys import RSACompareKey, RSAKey

    root, config, cache = computed
    capsys.readouterr()
    assert main(["--cache", str(cache), "cache", "ls"]) == 0
    listing = capsys.readouterr().out
    assert "bert:tiny text vs hf-clip:tiny text" in listing and "bert:tiny [sentences] text RSA" in listing
    key = RSACompareKey((RSAKey(MODELS[0], "text", "sentences", networks=("visual",)),
                         RSAKey(MODELS[1], "text", "sentences")))
    assert build(RSACompareKey, asdict(key)) == key
