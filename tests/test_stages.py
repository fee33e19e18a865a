"""Stages as data: the registry, Study.get, plans as DAGs, the serial executor, the catalog."""

import json
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from alignment.cache import Cache
from alignment.catalog import Catalog
from alignment.data import load_dataset
from alignment.keys import LayerKey, LesionKey, ModelPlan, Options
from alignment.pipeline import NotCached, Study
from alignment.plan import expand, plan_units, run_plan
from alignment.stages import STAGES, Stage, Unit, analyses, register
from test_pipeline import SPEC, planted  # noqa: F401 - the planted dataset fixture

OPTIONS = Options(n_atoms=8, n_null=20)


@dataclass(frozen=True)
class Doubled:
    """The toy stage's target: one layer."""

    layer: LayerKey

    def label(self) -> str:
        return f"{self.layer.label()} doubled"


@pytest.fixture
def toy_stage():
    """A stage registered by the test alone: twice a layer's encoding r."""
    calls = []

    def compute(study, unit, inputs):
        calls.append(unit)
        return {"doubled": 2 * np.asarray(inputs["encoding"]["scores"])}, {"description": "toy"}

    stage = register(Stage(
        name="doubled", version=1, target=Doubled,
        inputs=lambda study, unit, resolve: {"encoding": Unit("encoding", unit.target.layer, unit.subject)},
        params=lambda study, unit, inputs: {"encoding": inputs["encoding"].key},
        compute=compute, options=(), analysis="doubled",
        expand=lambda keys, plan, baselines: [Doubled(k) for k in keys],
    ))
    yield stage, calls
    STAGES.pop("doubled")


def test_a_stage_registered_elsewhere_runs_through_get_the_plan_and_the_catalog(planted, tmp_path, toy_stage):
    stage, calls = toy_stage
    assert analyses()["doubled"] is stage
    ds = load_dataset(planted)
    layer = LayerKey(SPEC, "image", 2)
    reader = Study(ds, Cache(tmp_path), OPTIONS, device="cpu", read_only=True)
    with pytest.raises(NotCached, match="image L2 attn"):
        reader.get("doubled", Doubled(layer), "01")
    assert not reader.has("doubled", Doubled(layer), "01")

    study = Study(ds, Cache(tmp_path), OPTIONS, device="cpu")
    plan = expand(study, [ModelPlan(SPEC, ("image",), (1, 2), analyses=("doubled",))], ["01"])
    assert plan.requested == {Unit("doubled", Doubled(LayerKey(SPEC, "image", n)), "01") for n in (1, 2)}
    run_plan(study, plan, progress=False)
    assert len(calls) == 2
    entry = reader.get("doubled", Doubled(layer), "01")
    np.testing.assert_array_equal(np.asarray(entry["doubled"]),
                                  2 * np.asarray(reader.get("encoding", layer, "01")["scores"]))
    assert reader.has("doubled", Doubled(layer), "01")

    records = [r for r in Catalog(Cache(tmp_path)) if r.stage == "doubled"]
    assert {r.target for r in records} == {Doubled(LayerKey(SPEC, "image", n)) for n in (1, 2)}
    assert {r.subject for r in records} == {"01"}
    # what keyed the inputs is recorded too: the encoding's options
    assert records[0].options["n_null"] == OPTIONS.n_null

    run_plan(study, plan, progress=False)  # all cached: nothing recomputed
    assert len(calls) == 2


def test_a_plan_lists_every_unit_after_the_units_it_reads(planted, tmp_path):
    study = Study(load_dataset(planted), Cache(tmp_path), OPTIONS, device="cpu")
    model = ModelPlan(SPEC, ("image",), (1, 2), analyses=("encoding", "neuron_mapping", "lesion"))
    plan = expand(study, [model, model], ["01"])
    assert len(set(plan.units)) == len(plan.units)  # each unit once, however often it is asked for
    position = {u: i for i, u in enumerate(plan.units)}
    for unit in plan.units:
        assert all(position[dep] < position[unit] for dep in plan.needs[unit]), unit
    ans = [u for u in plan.units if u.stage == "ans"]
    assert len(ans) == 1 and ans[0].subject is None  # one extraction serves every layer
    lesion = Unit("lesion", LesionKey(LayerKey(SPEC, "image", 2)), "01")
    # the lesion ranks ANs with a dictionary and GLM of each fold's training runs, not the glm stage's
    assert set(plan.needs[lesion]) == {Unit("encoding", LayerKey(SPEC, "image", 2), "01")}
    assert {u.stage for u in plan.requested} == {"encoding", "glm", "lesion"}
    assert plan_units(study, model) == [(stage, target) for stage, target in plan_units(study, model)]


def test_an_interrupted_plan_resumes_with_the_units_it_had_not_done(planted, tmp_path):
    study = Study(load_dataset(planted), Cache(tmp_path), OPTIONS, device="cpu")
    plan = expand(study, [ModelPlan(SPEC, ("image",), (1, 2))], ["01"])

    def stop_at_third(done, total, label):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_plan(study, plan, progress=stop_at_third)
    cached = [study.has(u.stage, u.target, u.subject) for u in plan.units]
    assert cached == [i < 3 for i in range(len(plan.units))]
    labels = []
    run_plan(Study(load_dataset(planted), Cache(tmp_path), OPTIONS, device="cpu"), plan,
             progress=lambda done, total, label: labels.append(label))
    assert all(study.has(u.stage, u.target, u.subject) for u in plan.units)
    assert labels[-1] == "done" and len(labels) == len(plan.units) + 1


def test_a_unit_and_its_study_are_self_contained_for_another_process(planted, tmp_path):
    study = Study(load_dataset(planted), Cache(tmp_path), OPTIONS, device="cpu")
    unit = Unit("encoding", LayerKey(SPEC, "image", 1), "01")
    study.get("ans", study.inputs(unit)["ans"].target)  # warm the memos: they must not travel
    clone = pickle.loads(pickle.dumps(study))
    assert clone.key(unit.stage, unit.target, unit.subject) == study.key(unit.stage, unit.target, unit.subject)
    # a fresh interpreter that only unpickles the pair and runs it
    code = ("import pickle, sys; from alignment.plan import run_unit; "
            "study, unit = pickle.load(sys.stdin.buffer); print(run_unit(study, unit).key)")
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((study, unit)), capture_output=True,
                          check=True, cwd=Path(__file__).parents[1])
    assert study.has(unit.stage, unit.target, unit.subject)
    assert done.stdout.decode().strip().splitlines()[-1] == study.key(unit.stage, unit.target, unit.subject)


def test_the_catalog_reads_results_written_before_units_were_recorded(planted, tmp_path):
    cache = Cache(tmp_path)
    study = Study(load_dataset(planted), cache, OPTIONS, device="cpu")
    layer = LayerKey(SPEC, "image", 1)
    entry = study.get("glm", layer, "01")
    study.get("encoding", layer, "01")
    for stage in ("atoms", "glm"):  # as an older version wrote them: no unit, no options
        path = cache.entry_path(stage, study.key(stage, layer, None if stage == "atoms" else "01")) / "meta.json"
        meta = json.loads(path.read_text())
        for name in ("unit", "options", "bold"):
            meta.pop(name, None)
        path.write_text(json.dumps(meta))
    fingerprints = {study.bold_params("01")["bold"]: "01"}
    catalog = Catalog(cache)
    assert catalog.options(fingerprints) == OPTIONS
    (record,) = catalog.of_subjects(fingerprints, ("glm",), OPTIONS)
    assert (record.target, record.subject, record.key) == (layer, "01", entry.key)
    assert catalog.of_subjects(fingerprints, ("glm",), Options(n_atoms=9, n_null=20)) == []


def test_the_glm_stage_keeps_the_joint_fit_beside_the_marginal_one(planted, tmp_path):
    """The mapping reads the marginal GLMs (default); the redundancy counts read the joint GLM,
    stored beside them: the same t as a study whose mapping GLM is the joint one."""
    from dataclasses import replace

    layer = LayerKey(SPEC, "image", 1)
    marginal = Study(load_dataset(planted), Cache(tmp_path), OPTIONS, device="cpu").get("glm", layer, "01")
    joint = Study(load_dataset(planted), Cache(tmp_path), replace(OPTIONS, glm="joint"), device="cpu").get("glm", layer, "01")
    assert OPTIONS.glm == "separate"
    np.testing.assert_allclose(np.asarray(marginal["t_joint"]), np.asarray(joint["t"]), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(joint["t_joint"]), np.asarray(joint["t"]))
    assert not np.allclose(np.asarray(marginal["t"]), np.asarray(marginal["t_joint"]))


def test_the_readme_example_stage_runs(planted, tmp_path):
    """The "Extending" section's code, executed as written, registers a working stage."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Extending", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {"__name__": "readme_example"}
    try:
        exec(compile(code, "README.md", "exec"), namespace)
        study = Study(load_dataset(planted), Cache(tmp_path), OPTIONS, device="cpu")
        layer = LayerKey(SPEC, "image", 2)
        scores = np.asarray(study.get("pc_encoding", namespace["PCKey"](layer, 10), "01")["scores"])
        assert scores.shape == (20484,)
        assert scores[:200].mean() > 0.3 and abs(scores[200:].mean()) < 0.05  # the planted voxels
        assert "pc_encoding" in analyses()
    finally:
        STAGES.pop("pc_encoding", None)


def test_the_lesion_stage_ranks_on_training_runs_and_keys_its_options(planted, tmp_path):
    study = Study(load_dataset(planted), Cache(tmp_path), OPTIONS, device="cpu")
    target = LesionKey(LayerKey(SPEC, "image", 2), fractions=(0.0, 0.1), n_repeats=2, max_voxels=200)
    entry = study.get("lesion", target, "01")
    n_ans = study.raw_ans(target.layer).shape[1]
    assert np.asarray(entry["rankings"]).shape == (len(load_dataset(planted).runs), n_ans)
    assert np.asarray(entry["ranked"])[0] == pytest.approx(np.asarray(entry["random_mean"])[0])
    assert {"n_atoms", "sparsity", "glm", "hrf"} <= set(entry.params)
    assert not study.has("glm", target.layer, "01")  # no in-sample GLM was needed
