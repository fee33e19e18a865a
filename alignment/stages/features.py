"""Stage ``ans``: raw pooled ANs of a model at every TR (:mod:`alignment.features`)."""

from __future__ import annotations

from alignment.features import STAGE, STAGE_VERSION, FeatureRequest, extract_features, feature_params
from alignment.stages.base import Stage, Unit, register


def ans_unit(model: str, kind: str = "attn", condition: str = "image+text") -> Unit:
    """The ``ans`` unit holding every layer of every branch of a model for one kind/condition."""
    return Unit(STAGE, FeatureRequest.make(model, None, kind=kind, condition=condition))


register(Stage(
    name=STAGE, gpu=True, version=STAGE_VERSION, target=FeatureRequest, per_subject=False,
    params=lambda study, unit, inputs: feature_params(study.dataset, unit.target, study.stimuli_fingerprint),
    compute=lambda study, unit, inputs: extract_features(study.dataset, unit.target, device=study.device,
                                                         progress=study.progress),
    doc="raw pooled ANs at every TR: <branch>.L<layer> (T, N), runs (T,)",
))
