"""Stage ``ceiling``: the per-voxel noise ceiling of a subject from the repeated segment."""

from __future__ import annotations

import math

import numpy as np

from alignment.stages.base import Stage, Unit, register

#: the one target of the stage (it depends on the subject's BOLD and the segment labels only)
CEILING_TARGET = "repeats"
#: estimator of :func:`alignment.stats.noise_ceiling`
CEILING_METHOD = "signal_power"


def ceiling_params(study, unit: Unit, inputs) -> dict:
    from alignment.encoding import REPEAT_MARGIN_S

    return {**study.bold_params(unit.subject), "stimuli": study.stimuli_fingerprint, "method": CEILING_METHOD,
            "margin_s": REPEAT_MARGIN_S}


def ceiling_compute(study, unit: Unit, inputs) -> tuple[dict, dict]:
    """Array ``ceiling`` (V,): the expected r between the noise-free response and
    single-presentation data (one run's BOLD), from the windows of the repeated segment
    (segment + ``REPEAT_MARGIN_S``) in every run that shows it. Without repeats: all NaN and
    a one-line warning in the metadata."""
    from alignment.encoding import REPEAT_MARGIN_S
    from alignment.stages.encoding import segment_labels
    from alignment.stats import noise_ceiling, repeat_windows

    Y = study.bold(unit.subject)
    margin = math.ceil(REPEAT_MARGIN_S / study.dataset.tr)
    meta = {"description": f"noise ceiling sub-{unit.subject}", "method": CEILING_METHOD, "n_average": 1}
    try:
        windows, labels = repeat_windows(Y, segment_labels(study), study.runs, margin)
    except ValueError as err:
        meta["warnings"] = [str(err)]
        return {"ceiling": np.full(Y.shape[1], np.nan, np.float32)}, meta
    meta.update({"segments": labels, "n_repeats": int(windows.shape[0]), "window_trs": int(windows.shape[1])})
    ceiling = noise_ceiling(windows, method=CEILING_METHOD, n_average=1)
    return {"ceiling": ceiling.astype(np.float32)}, meta


register(Stage(
    name="ceiling", version=1, target=str, params=ceiling_params, compute=ceiling_compute,
    analysis="ceiling", default=True, expand=lambda keys, plan, baselines: [CEILING_TARGET],
    doc="noise ceiling from the repeated segment: ceiling (V,), r units, single presentation",
))
