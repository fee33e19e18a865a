"""Run configs and dataset.toml against their schemas; one-line errors of the CLI."""

import errno

import pytest

import alignment.plan
from alignment.cli import main
from alignment.config import ConfigError, OptionsTable, RunConfig, options_from_dict
from alignment.data import DatasetError, load_dataset
from alignment.pipeline import Baselines, LayerKey, ModelPlan, Options

STUDY = '[study]\ndataset = "x"\n'
MODEL = '[[models]]\nspec = "a"\n'
BASE = STUDY + MODEL


def load_error(tmp_path, body) -> str:
    """The message of loading a config with ``body``, checked to be one line naming the file."""
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        RunConfig.load(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    assert info.value.path == str(path)
    return message


@pytest.mark.parametrize(
    "body, match",
    [
        ("[study]\n", "needs a 'dataset'"),
        ('[study]\ndataset = "x"\n', "at least one"),
        ('[study]\ndataset = "x"\n[[models]]\nspec = "a"\n[analyses]\nrsa = true\n', "unknown analyses"),
        ('[study]\ndataset = "x"\n[[models]]\nspec = "a"\n[options]\nn_atom = 3\n', "unknown analysis options"),
        ("[study\n", "not valid TOML"),
        ('[study]\ndataset = "x"\n[[models]]\nspec = "a"\n[analyses]\nintegration = true\n', "needs an \\[integration\\]"),
        ('[study]\ndataset = "x"\n[[models]]\nspec = "a"\n[integration]\nimage_baseline = "v"\n', "text_baseline"),
        ('[study]\ndataset = "x"\n[[models]]\nspec = "a"\n[integration]\nimage_baseline = "v"\n'
         'text_baseline = "t"\nimage_layer = "last"\n', "layer index"),
        ('[study]\ndataset = "x"\n[[models]]\nspec = "a"\n[integration]\nimage_baselin = "v"\n', "unknown keys"),
    ],
)
def test_bad_configs(tmp_path, body, match):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ValueError, match=match):
        RunConfig.load(path)


# ------------------------------------------------------------------ the mistakes a new user makes
@pytest.mark.parametrize(
    "body, parts",
    [
        # misspelled keys and tables are named, with the key meant and the keys known
        (STUDY + MODEL + "layer = [1, 2]\n",
         ["[[models]] #1 has unknown keys ['layer']", "did you mean 'layers'", "known: spec, branches, layers"]),
        ('[study]\ndataset = "x"\nsubject = ["01"]\n' + MODEL,
         ["[study] has unknown keys ['subject']", "did you mean 'subjects'", "known: dataset, subjects, device, voxel_chunk"]),
        (BASE + '[option]\nglm = "joint"\n',
         ["unknown tables ['option']", "did you mean 'options'", "known: study, models, analyses"]),
        (BASE + MODEL.replace("spec", "spc"), ["[[models]] #2 has unknown keys ['spc']", "did you mean 'spec'"]),
        # closed choices
        (BASE + '[options]\nglm = "seperate"\n', ["[options] glm: unknown glm 'seperate'", "'separate', 'joint'"]),
        (BASE + '[options]\nnull = "permutation"\n', ["[options] null: unknown null 'permutation'",
                                                      "'circular', 'block'"]),
        (BASE + '[options]\nhrf = "glover"\n', ["[options] hrf: unknown hrf 'glover'", "'spm', 'fir', 'none'"]),
        ('[study]\ndataset = "x"\ndevice = "gpu"\n' + MODEL,
         ["[study] device: unknown device 'gpu'", "'auto', 'cpu', 'cuda'"]),
        ('[study]\ndataset = "x"\nvoxel_chunk = 0\n' + MODEL, ["[study] voxel_chunk", "a positive number of voxels"]),
        (BASE + 'kinds = ["attn", "neurons"]\n', ["[[models]] #1 kinds must be", "'attn', 'qk', 'mlp'", "'neurons'"]),
        # strict types and ranges
        (BASE + '[analyses]\nencoding = "no"\n', ["[analyses] encoding must be true or false, got 'no'"]),
        (BASE + '[options]\nn_null = "20"\n', ["[options] n_null must be a positive integer, got '20'"]),
        (BASE + "[options]\nn_null = 0\n", ["[options] n_null must be a positive integer, got 0"]),
        (BASE + "[options]\nfdr_q = 2.0\n", ["[options] fdr_q must be a number in (0, 1), got 2.0"]),
        (BASE + "[options]\nalphas = [1, -10]\n", ["[options] alphas must be a non-empty list of positive numbers"]),
        (BASE + "layers = 0\n", ['[[models]] #1 layers must be "all" or a list of layer indices, got 0']),
        # an [analyses] list at the top level, where a table of true/false belongs
        ('analyses = ["encoding"]\n' + BASE,
         ["analyses must be an [analyses] table of analysis = true/false", "got ['encoding']"]),
        (BASE + 'analyses = ["encodng"]\n',
         ["[[models]] #1 analyses: unknown analyses ['encodng']", "did you mean 'encoding'",
          "known: encoding, ceiling, neuron_mapping"]),
        ('[[models]]\nspec = "a"\n', ["missing [study] table (keys: dataset, subjects, device, voxel_chunk)"]),
        (STUDY + '[models]\nspec = "a"\n', ["models must be one or more [[models]] tables, got a table"]),
    ],
)
def test_mistakes_are_named_in_one_line(tmp_path, body, parts):
    message = load_error(tmp_path, body)
    for part in parts:
        assert part in message, message


def test_unknown_keys_are_reported_before_the_keys_they_leave_missing(tmp_path):
    message = load_error(tmp_path, BASE + '[integration]\nimage_baselin = "v"\ntext_baseline = "t"\n')
    assert "[integration] has unknown keys ['image_baselin'] (did you mean 'image_baseline'?)" in message


def test_values_pass_through_as_written_and_defaults_come_from_the_dataclasses(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(BASE)
    assert RunConfig.load(path) == RunConfig(dataset=str(tmp_path / "x"), models=(ModelPlan("a"),))
    path.write_text('[study]\ndataset = "/data/x"\nsubjects = ["01", 100307]\ndevice = "cpu"\nvoxel_chunk = 5000\n'
                    '[[models]]\nspec = "a"\nbranches = ["image"]\nlayers = [0, 2]\nkinds = ["mlp"]\n'
                    'conditions = ["image"]\nanalyses = ["integration"]\n'
                    '[analyses]\nneuron_mapping = false\nvariance_partition = true\n'
                    '[integration]\nimage_baseline = "v"\ntext_baseline = "t"\nimage_layer = 3\ntext_layer = "best"\n'
                    '[options]\nsparsity = 1\nalphas = [1, 10]\nglm = "joint"\n')
    config = RunConfig.load(path)
    assert config == RunConfig(
        dataset="/data/x", subjects=("01", "100307"), device="cpu", voxel_chunk=5000,
        models=(ModelPlan("a", ("image",), (0, 2), ("mlp",), ("image",), ("integration",)),),
        analyses=("encoding", "ceiling", "variance_partition"), baselines=Baselines("v", "t", image_layer=3),
        options=Options(sparsity=1, alphas=(1.0, 10.0), glm="joint"))
    # an int stays an int (it is hashed into the cache keys as written); alphas were always floats
    assert type(config.options.sparsity) is int and all(type(a) is float for a in config.options.alphas)


def test_the_options_table_declares_every_option():
    assert list(OptionsTable.model_fields) == list(Options.__dataclass_fields__)


def test_options_from_dict_is_checked_by_the_schema():
    assert options_from_dict({"alphas": [1, 10], "n_null": 20}) == Options(alphas=(1.0, 10.0), n_null=20)
    with pytest.raises(ValueError,
                       match=r"^\[options\] glm: unknown glm 'seperate'; expected one of 'separate', 'joint'$"):
        options_from_dict({"glm": "seperate"})
    with pytest.raises(ValueError, match=r"^\[options\] has unknown analysis options \['n_atom'\]"):
        options_from_dict({"n_atom": 3})
    assert options_from_dict({"block_inflation": "bound"}) == Options(block_inflation="bound")
    with pytest.raises(ValueError, match=r"^\[options\] block_inflation: .*'estimated', 'bound'$"):
        options_from_dict({"block_inflation": "doubled"})


def test_analysis_names_are_read_when_a_config_is_checked(tmp_path, monkeypatch):
    from alignment.stages import STAGES, Stage

    encoding = STAGES["encoding"]
    monkeypatch.setitem(STAGES, "rsa", Stage("rsa", 1, object, encoding.params, encoding.compute, analysis="rsa",
                                             expand=encoding.expand))
    path = tmp_path / "run.toml"
    path.write_text(BASE + 'analyses = ["rsa"]\n[analyses]\nrsa = true\n')
    config = RunConfig.load(path)
    assert config.analyses == ("encoding", "ceiling", "neuron_mapping", "rsa") and config.models[0].analyses == ("rsa",)


# ------------------------------------------------------------------ dataset.toml
DATASET = '[dataset]\nname = "x"\ntr = 1.0\nspace = "fsLR32k"\n'
RUN = '[[runs]]\nid = "r1"\nn_trs = 3\n'


@pytest.mark.parametrize(
    "text, parts",
    [
        (DATASET.replace("tr = 1.0", "tr = 1.0\nTR = 2.0") + RUN,
         ["[dataset] has unknown keys ['TR']", "did you mean 'tr'", "known: name, tr, space"]),
        (DATASET + RUN + "[[run]]\nid = 'r2'\nn_trs = 3\n", ["unknown tables ['run']", "did you mean 'runs'"]),
        (DATASET + RUN.replace("n_trs", "n_tr"), ["[[runs]] #1 has unknown keys ['n_tr']", "did you mean 'n_trs'"]),
        (DATASET.replace("tr = 1.0", 'tr = "2"') + RUN, ["[dataset] tr must be a positive number of seconds, got '2'"]),
        (DATASET.replace("tr = 1.0", "tr = nan") + RUN, ["[dataset] tr must be a positive number of seconds, got nan"]),
        (DATASET.replace('"x"', "3") + RUN, ["[dataset] name must be a non-empty string, got 3"]),
        (DATASET.replace("fsLR32k", "MNI") + RUN, ["[dataset] space: unknown space 'MNI'", "'fsLR32k', 'fsaverage5'"]),
        (DATASET + RUN.replace("3", '"3"'), ["[[runs]] #1 n_trs must be a positive integer, got '3'"]),
        (DATASET + RUN + RUN.replace('"r1"', "true"), ["[[runs]] #2 id must be a run id usable as a file name"]),
    ],
)
def test_dataset_toml_mistakes_are_named_in_one_line(tmp_path, text, parts):
    (tmp_path / "dataset.toml").write_text(text)
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "dataset.toml")), message
    assert info.value.path == str(tmp_path / "dataset.toml")
    for part in parts:
        assert part in message, message


def test_integer_run_ids_still_read_as_strings(tmp_path):
    (tmp_path / "dataset.toml").write_text(DATASET + RUN.replace('"r1"', "1"))
    ds = load_dataset(tmp_path)
    assert ds.runs == ["1"] and ds.n_trs == {"1": 3} and ds.tr == 1.0


# ------------------------------------------------------------------ the CLI: one line, exit status
def tiny_config(tmp_path, extra=""):
    """A config on a 2-TR dataset with one subject (nothing is computed before the cache is used)."""
    root = tmp_path / "ds"
    (root / "stimuli").mkdir(parents=True)
    (root / "sub-01").mkdir()
    (root / "dataset.toml").write_text(DATASET.replace("fsLR32k", "fsaverage5") + RUN.replace("3", "2"))
    (root / "stimuli" / "r1.tsv").write_text("tr\tframe\tcaption\tsegment\n0\t\ta cat\tclip\n1\t\t\trest\n")
    path = tmp_path / "run.toml"
    path.write_text(f'[study]\ndataset = "ds"\ndevice = "cpu"\n[[models]]\nspec = "random:clip:demo-tiny"\n{extra}')
    return path


def test_cli_bad_config(tmp_path, capsys):
    path = tiny_config(tmp_path, '[options]\nglm = "seperate"\n')
    assert main(["--cache", str(tmp_path / "cache"), "run", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {path}: [options] glm: unknown glm 'seperate'; expected one of 'separate', 'joint'\n"
    assert not (tmp_path / "cache").exists()


def test_cli_cache_that_cannot_be_written(tmp_path, capsys):
    """A cache folder that cannot be written (here: a file in its place, which stops root too)."""
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    assert main(["--cache", str(cache), "run", str(tiny_config(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {cache}") and "Not a directory" in err, err


@pytest.mark.parametrize("exc, status, message", [
    (KeyboardInterrupt(), 130, "interrupted; finished results stay in the cache and a rerun resumes"),
    (OSError(errno.ENOSPC, "No space left on device", "cache/encoding"), 1,
     "error: cache/encoding: No space left on device"),
])
def test_cli_error_during_a_run_closes_the_progress_bar_first(tmp_path, capsys, monkeypatch, exc, status, message):
    def fail(*args):
        raise exc

    monkeypatch.setattr(alignment.plan, "plan_units", lambda *a, **k: [("encoding", LayerKey("a", "image", 0))])
    monkeypatch.setattr(alignment.plan, "run_unit", fail)
    assert main(["--cache", str(tmp_path / "cache"), "run", str(tiny_config(tmp_path))]) == status
    err = capsys.readouterr().err
    # the bar (on stderr) ended its line before the message, which is the last line
    assert err.endswith("\n") and err.splitlines()[-1] == message, err


def test_cli_keeps_the_traceback_of_a_bug(tmp_path, monkeypatch):
    def bug(*args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(alignment.plan, "plan_units", lambda *a, **k: [("encoding", LayerKey("a", "image", 0))])
    monkeypatch.setattr(alignment.plan, "run_unit", bug)
    with pytest.raises(ZeroDivisionError):
        main(["--cache", str(tmp_path / "cache"), "run", str(tiny_config(tmp_path))])
