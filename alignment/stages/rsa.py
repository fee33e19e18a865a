"""Concept RSA as cached stages (DESIGN §5.8), on concept-wise datasets (``pereira2018``).

=================  ===========================================================================
stage              arrays
=================  ===========================================================================
``concept_ans``    a model's hidden states per concept: ``<branch>.L<layer>`` (C, N)
``model_rdm``      one layer's RDM over the concepts: ``rdm`` (P,)
``brain_rdm``      one participant's RDM of one network: ``rdm`` (P,) (per subject)
``rsa``            every layer of a branch against every network's group RDM: ``rho``, ``p``,
                   ``q`` (L, N), CIs ``ci_concepts`` / ``ci_participants`` (2, L, N),
                   ``rho_subjects`` (S, L, N), ``ceiling`` (2, N) (lower, upper), best layer
                   ``best_in_sample``, ``best_in_sample_rho``, ``best_held_out``,
                   ``best_held_out_rho`` (N,), ``best_share`` (L, N); with a control model
                   ``partial_rho``, ``partial_ci`` (2, L, N), ``control_layer`` (N,)
``rsa_compare``    every pair of models per network: ``delta``, ``low``, ``high``, ``p``, ``q``,
                   ``layer_a``, ``layer_b`` (K pairs, N)
=================  ===========================================================================

P = C (C − 1) / 2 concept pairs (``pdist`` order). None of these is a run config's
``[analyses]`` entry: the ``[rsa]`` table asks for them (:func:`rsa_targets`).
"""

from __future__ import annotations

from dataclasses import asdict
from itertools import combinations

import numpy as np

from alignment.keys import BrainRDMKey, ConceptFeatureKey, ModelRDMKey, RSACompareKey, RSAKey, RSAPlan
from alignment.stages.base import Stage, Unit, register

#: CI level of every RSA interval
RSA_CI = 0.95
#: the branch of a language-only control model
CONTROL_BRANCH = "text"
#: the AN kind of concept features (every layer's hidden state, layer 0 = embeddings)
CONCEPT_KIND = "hidden"


def _concepts(study):
    from alignment.concepts import require_concepts

    require_concepts(study.dataset)
    return study.dataset


# ------------------------------------------------------------------ concept_ans
def concept_ans_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    from alignment.concepts import concept_features
    from alignment.features import array_name
    from alignment.models import load_model

    key: ConceptFeatureKey = unit.target
    dataset = _concepts(study)
    adapter = load_model(key.model, device=study.device)
    feats = concept_features(adapter, dataset, key.paradigm, ablation=key.ablation, kind=CONCEPT_KIND,
                             pooling=key.pooling, progress=study.progress)
    branches: dict[str, list[int]] = {}
    for branch, layer in feats:
        branches.setdefault(branch, []).append(int(layer))
    arrays = {array_name(b, layer): X for (b, layer), X in feats.items()}
    return arrays, {"description": f"concept ANs {key.label()}", "branches": branches,
                    "concepts": list(dataset.concepts)}


register(Stage(
    name="concept_ans", version=1, target=ConceptFeatureKey, per_subject=False,
    params=lambda study, unit, inputs: {"stimuli": study.stimuli_fingerprint, **asdict(unit.target),
                                        "kind": CONCEPT_KIND},
    compute=concept_ans_compute,
    doc="hidden states per concept: <branch>.L<layer> (C, N), mean over the concept's stimuli",
))


# ------------------------------------------------------------------ model_rdm
def model_rdm_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    from alignment.analyses.rsa import rdm
    from alignment.features import array_name

    key: ModelRDMKey = unit.target
    entry = inputs["features"]
    name = array_name(key.branch, key.layer)
    if name not in entry:
        raise ValueError(f"{key.features.label()}: no branch {key.branch!r} layer {key.layer}; "
                         f"branches: {entry.meta['branches']}")
    return {"rdm": rdm(np.asarray(entry[name]), key.metric)}, {"description": f"model RDM {key.label()}"}


register(Stage(
    name="model_rdm", version=1, target=ModelRDMKey, per_subject=False,
    inputs=lambda study, unit, resolve: {"features": Unit("concept_ans", unit.target.features)},
    params=lambda study, unit, inputs: {"features": inputs["features"].key, "branch": unit.target.branch,
                                        "layer": unit.target.layer, "metric": unit.target.metric},
    compute=model_rdm_compute,
    doc="one layer's RDM over the concepts: rdm (P,)",
))


# ------------------------------------------------------------------ brain_rdm
def brain_rdm_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    from alignment.analyses.rsa import rdm

    key: BrainRDMKey = unit.target
    Y = _concepts(study).responses(unit.subject, key.paradigm, key.network)
    if Y.shape[1] == 0:
        raise ValueError(f"participant {unit.subject}: network {key.network!r} has no voxels")
    return ({"rdm": rdm(Y, key.metric)},
            {"description": f"brain RDM {key.label()} sub-{unit.subject}", "n_voxels": int(Y.shape[1])})


register(Stage(
    name="brain_rdm", version=1, target=BrainRDMKey, per_subject=True,
    params=lambda study, unit, inputs: {**study.bold_params(unit.subject), **asdict(unit.target)},
    compute=brain_rdm_compute,
    doc="a participant's RDM of one network: rdm (P,)",
))


# ------------------------------------------------------------------ rsa
def rsa_subjects(study, key: RSAKey) -> list[str]:
    """The participants of an RSA result (all of the dataset's when the key names none)."""
    subjects = [str(s) for s in (key.subjects or study.dataset.subjects)]
    unknown = sorted(set(subjects) - set(map(str, study.dataset.subjects)))
    if unknown:
        raise ValueError(f"unknown participants {unknown}; the dataset has {', '.join(study.dataset.subjects)}")
    if len(subjects) < 2:
        raise ValueError("concept RSA needs at least 2 participants (group RDM, CIs, noise ceiling)")
    return subjects


def rsa_networks(study, key: RSAKey) -> list[str]:
    """The networks of an RSA result (all the dataset lists when the key names none)."""
    known = list(_concepts(study).networks())
    networks = list(key.networks or known)
    unknown = [n for n in networks if n not in known]
    if unknown:
        raise ValueError(f"unknown networks {unknown}; the dataset lists {', '.join(known)}")
    return networks


def _layers(resolve, features: ConceptFeatureKey, branch: str) -> list[int]:
    branches = resolve(Unit("concept_ans", features)).meta["branches"]
    if branch not in branches:
        raise ValueError(f"{features.label()} has no branch {branch!r}; branches: {', '.join(branches)}")
    return [int(layer) for layer in branches[branch]]


def rsa_inputs(study, unit: Unit, resolve) -> dict:
    key: RSAKey = unit.target
    _concepts(study)
    if key.split not in ("participants", "concepts"):
        raise ValueError(f"split must be 'participants' or 'concepts', got {key.split!r}")
    out = {f"model.{layer}": Unit("model_rdm", ModelRDMKey(key.features, key.branch, layer, key.metric))
           for layer in _layers(resolve, key.features, key.branch)}
    for network in rsa_networks(study, key):
        for s in rsa_subjects(study, key):
            out[f"brain.{network}.{s}"] = Unit("brain_rdm", BrainRDMKey(key.paradigm, network, key.metric), s)
    if key.control is not None:
        control = ConceptFeatureKey(key.control, key.paradigm)
        for layer in _layers(resolve, control, CONTROL_BRANCH):
            out[f"control.{layer}"] = Unit("model_rdm", ModelRDMKey(control, CONTROL_BRANCH, layer, key.metric))
    return out


def _role_keys(inputs, prefix: str) -> list[str]:
    return [inputs[role].key for role in inputs if role.startswith(prefix)]


def rsa_params(study, unit: Unit, inputs) -> dict:
    key: RSAKey = unit.target
    return {"model": _role_keys(inputs, "model."), "brain": _role_keys(inputs, "brain."),
            "control": _role_keys(inputs, "control."), "n_perm": key.n_perm, "n_boot": key.n_boot,
            "split": key.split, "seed": key.seed, "ci": RSA_CI, "fdr_q": study.options.fdr_q}


def _stack(inputs, prefix: str) -> np.ndarray:
    return np.stack([np.asarray(inputs[role]["rdm"]) for role in inputs if role.startswith(prefix)])


def rsa_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Group RDM of a network = mean of its participants' RDMs; every statistic from
    :mod:`alignment.analyses.rsa` on the layer RDMs (L, P) and the participants' RDMs (S, P)."""
    from alignment.analyses import rsa
    from alignment.conventions import layer_name

    key: RSAKey = unit.target
    networks, subjects = rsa_networks(study, key), rsa_subjects(study, key)
    layers = [int(role.split(".")[1]) for role in inputs if role.startswith("model.")]
    M = _stack(inputs, "model.")  # (L, P)
    if np.any(np.ptp(M, axis=1) == 0):
        raise ValueError(f"{key.label()}: a layer's RDM is constant (the branch sees the same input for every "
                         "concept, e.g. an image tower under sentences); leave the branch out")
    R = {n: _stack(inputs, f"brain.{n}.") for n in networks}  # (S, P) each
    G = np.stack([rsa.group_rdm(R[n]) for n in networks])  # (N, P)
    L, N = len(layers), len(networks)
    table = rsa.layer_network_rsa(G, M, n_perm=key.n_perm, q=study.options.fdr_q, seed=key.seed)
    arrays = {"layers": np.asarray(layers), "rho": table.rho, "p": table.p, "q": table.q,
              "ci_concepts": np.empty((2, L, N)), "ci_participants": np.empty((2, L, N)),
              "rho_subjects": np.empty((len(subjects), L, N)), "ceiling": np.empty((2, N)),
              "best_in_sample": np.empty(N, np.int64), "best_in_sample_rho": np.empty(N),
              "best_held_out": np.empty(N, np.int64), "best_held_out_rho": np.empty(N),
              "best_share": np.empty((L, N))}
    for j, n in enumerate(networks):
        boot = rsa.bootstrap_concepts(G[j], M, n_boot=key.n_boot, ci=RSA_CI, seed=key.seed)
        arrays["ci_concepts"][:, :, j] = boot.low, boot.high
        boot = rsa.bootstrap_participants(R[n], M, n_boot=key.n_boot, ci=RSA_CI, seed=key.seed)
        arrays["ci_participants"][:, :, j] = boot.low, boot.high
        arrays["rho_subjects"][:, :, j] = [rsa.spearman(r, M) for r in R[n]]
        ceiling = rsa.noise_ceiling(R[n])
        arrays["ceiling"][:, j] = ceiling.lower, ceiling.upper
        best = rsa.best_layer(R[n], M, split=key.split, seed=key.seed)
        arrays["best_in_sample"][j], arrays["best_in_sample_rho"][j] = best.in_sample_layer, best.in_sample_rho
        arrays["best_held_out"][j], arrays["best_held_out_rho"][j] = best.modal_layer, best.held_out
        arrays["best_share"][:, j] = best.selection_share
    meta = {"description": f"concept RSA {key.label()}", "networks": networks, "subjects": subjects,
            "layers": layers, "layer_names": [layer_name(CONCEPT_KIND, layer) for layer in layers],
            "concepts": list(study.dataset.concepts), "fdr_q": study.options.fdr_q}
    if key.control is not None:
        C = _stack(inputs, "control.")  # (K, P)
        arrays["partial_rho"], arrays["partial_ci"] = np.empty((L, N)), np.empty((2, L, N))
        arrays["control_layer"] = np.empty(N, np.int64)
        for j in range(N):
            # partial out the control layer closest to this network: what the language model
            # explains at its best
            k = int(np.nanargmax(rsa.spearman(G[j], C)))
            arrays["control_layer"][j] = k
            boot = rsa.bootstrap_concepts(G[j], M, n_boot=key.n_boot, ci=RSA_CI, seed=key.seed, control=C[k])
            arrays["partial_rho"][:, j] = boot.estimate
            arrays["partial_ci"][:, :, j] = boot.low, boot.high
        meta["control"] = key.control
    return arrays, meta


register(Stage(
    name="rsa", version=1, target=RSAKey, per_subject=False, inputs=rsa_inputs, params=rsa_params,
    compute=rsa_compute, options=("fdr_q",),
    doc="concept RSA of a branch's layers × networks: rho, p, q, CIs, ceiling, best layer",
))


# ------------------------------------------------------------------ rsa_compare
def compare_inputs(study, unit: Unit, resolve) -> dict:
    keys = unit.target.results
    if len(keys) < 2:
        raise ValueError("a model comparison needs at least 2 RSA results")
    first = keys[0]
    for k in keys[1:]:
        if (k.paradigm, k.networks, k.metric, k.subjects) != (first.paradigm, first.networks, first.metric,
                                                              first.subjects):
            raise ValueError("compared RSA results must share paradigm, networks, metric and participants")
    out = {f"rsa.{i}": Unit("rsa", k) for i, k in enumerate(keys)}
    for i, k in enumerate(keys):
        for layer in _layers(resolve, k.features, k.branch):
            out[f"model.{i}.{layer}"] = Unit("model_rdm", ModelRDMKey(k.features, k.branch, layer, k.metric))
    for network in rsa_networks(study, first):
        for s in rsa_subjects(study, first):
            out[f"brain.{network}.{s}"] = Unit("brain_rdm", BrainRDMKey(first.paradigm, network, first.metric), s)
    return out


def compare_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Each model at its layer chosen out of sample (``best_held_out`` of its RSA result);
    Δρ against the same group RDM by the paired concept bootstrap
    (:func:`alignment.analyses.rsa.compare_models`); q: BH-FDR over all pairs × networks."""
    from alignment.analyses import rsa
    from alignment.stats import fdr_bh

    keys = unit.target.results
    first = keys[0]
    networks = rsa_networks(study, first)
    pairs = list(combinations(range(len(keys)), 2))
    n_boot = min(k.n_boot for k in keys)
    shape = (len(pairs), len(networks))
    out = {name: np.full(shape, np.nan) for name in ("delta", "low", "high", "p")}
    out["layer_a"], out["layer_b"] = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    for j, n in enumerate(networks):
        g = rsa.group_rdm(_stack(inputs, f"brain.{n}."))
        for i, (a, b) in enumerate(pairs):
            la = int(inputs[f"rsa.{a}"]["layers"][inputs[f"rsa.{a}"]["best_held_out"][j]])
            lb = int(inputs[f"rsa.{b}"]["layers"][inputs[f"rsa.{b}"]["best_held_out"][j]])
            diff = rsa.compare_models(g, np.asarray(inputs[f"model.{a}.{la}"]["rdm"]),
                                      np.asarray(inputs[f"model.{b}.{lb}"]["rdm"]), method="bootstrap",
                                      n_boot=n_boot, ci=RSA_CI, seed=first.seed)
            out["delta"][i, j], out["low"][i, j], out["high"][i, j], out["p"][i, j] = \
                diff.delta, diff.low, diff.high, diff.p
            out["layer_a"][i, j], out["layer_b"][i, j] = la, lb
    _, out["q"] = fdr_bh(out["p"], study.options.fdr_q)
    labels = [f"{k.model} {k.branch}" for k in keys]
    return out, {"description": f"RSA model differences {unit.target.label()}", "networks": networks,
                 "models": labels, "pairs": [[labels[a], labels[b]] for a, b in pairs]}


register(Stage(
    name="rsa_compare", version=1, target=RSACompareKey, per_subject=False, inputs=compare_inputs,
    params=lambda study, unit, inputs: {role: e.key for role, e in sorted(inputs.items())} | {
        "ci": RSA_CI, "fdr_q": study.options.fdr_q},
    compute=compare_compute, options=("fdr_q",),
    doc="model × model Δρ per network at each model's out-of-sample layer: delta, CI, p, q (K, N)",
))


# ------------------------------------------------------------------ run configs
def branch_varies(entry, branch: str) -> bool:
    """Whether a ``concept_ans`` entry's branch differs between concepts (an image tower shown
    only a blank or noise image does not: its RDMs would be constant)."""
    from alignment.features import array_name

    return any(np.ptp(np.asarray(entry[array_name(branch, layer)]), axis=0).any()
               for layer in entry.meta["branches"][branch])


def rsa_targets(study, plan: RSAPlan, subjects: tuple = ()) -> list[tuple[str, object]]:
    """(stage, target) pairs of a run config's ``[rsa]``: an ``rsa`` unit per model branch ×
    paradigm × ablation, and per paradigm × ablation an ``rsa_compare`` of them when there are
    two or more. A model's branches: ``plan.branches`` that it has, or all of them, less those
    that see the same input for every concept; the noise ablation applies to models that read
    images only. ``subjects``: the participants (empty: all the dataset has)."""
    from alignment.models import ARCHITECTURES, ModelSpec

    def text_only(spec: str) -> bool:
        arch = ARCHITECTURES.get(ModelSpec.parse(spec).arch)
        return arch is not None and tuple(arch.branches) == (CONTROL_BRANCH,)

    _concepts(study)
    out: list[tuple[str, object]] = []
    for paradigm in plan.paradigms:
        for ablation in plan.ablations:
            group = []
            for spec in plan.models:
                if ablation != "none" and text_only(spec):
                    continue
                features = ConceptFeatureKey(spec, paradigm, ablation)
                entry = study.get("concept_ans", features)
                for branch in entry.meta["branches"]:
                    if (plan.branches is not None and branch not in plan.branches) or not branch_varies(entry, branch):
                        continue
                    key = RSAKey(spec, branch, paradigm, ablation, tuple(plan.networks), plan.metric,
                                 plan.control, tuple(subjects), plan.n_perm, plan.n_boot, plan.split, plan.seed)
                    group.append(key)
                    out.append(("rsa", key))
            if len(group) >= 2:
                out.append(("rsa_compare", RSACompareKey(tuple(group))))
    return out
