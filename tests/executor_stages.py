"""Toy stages for the executor tests, registered on import (the Dask workers import this module
through ``DaskExecutor(imports=...)``). Their targets are strings; they read no BOLD.

- ``toy``: ``value`` = the target's code points; appends its target to ``calls.log`` in the
  cache root (one line per computation, in whichever process computes it); a target that
  starts with ``slow`` takes half a second;
- ``dies_once``: kills its own process the first time it runs on a cache, computes the next time;
- ``broken``: always raises;
- ``reads``: the ``toy`` result of its target's input (``"<stage>:<target>"``), doubled.
"""

import os
import signal
import time

import numpy as np

from alignment.stages import Stage, Unit, register


def _value(target: str) -> np.ndarray:
    return np.array([ord(c) for c in target], dtype=np.float64)


def _log(study, name: str):
    with open(study.cache.root / "calls.log", "a") as f:
        f.write(name + "\n")


def _toy(study, unit, inputs):
    _log(study, unit.target)
    if unit.target.startswith("slow"):
        time.sleep(0.5)
    return {"value": _value(unit.target)}, {}


def _dies_once(study, unit, inputs):
    marker = study.cache.root / f"died-{unit.target}"
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)  # the worker is lost mid-unit
    _log(study, unit.target)
    return {"value": _value(unit.target)}, {}


def _broken(study, unit, inputs):
    raise ValueError(f"planted failure of {unit.target}")


def _reads_inputs(study, unit, resolve):
    stage, target = unit.target.split(":", 1)
    return {"input": Unit(stage, target)}


def _reads(study, unit, inputs):
    return {"value": 2 * np.asarray(inputs["input"]["value"])}, {}


def _params(study, unit, inputs):
    return {"target": unit.target, **{role: entry.key for role, entry in inputs.items()}}


for _stage in (
    Stage(name="toy", version=1, target=str, params=_params, compute=_toy, per_subject=False),
    Stage(name="dies_once", version=1, target=str, params=_params, compute=_dies_once, per_subject=False),
    Stage(name="broken", version=1, target=str, params=_params, compute=_broken, per_subject=False),
    Stage(name="reads", version=1, target=str, params=_params, compute=_reads, inputs=_reads_inputs,
          per_subject=False),
):
    register(_stage)
