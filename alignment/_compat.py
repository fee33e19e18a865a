"""Import-time fixes for the pinned CPU torch + registry torchvision pair.

The torchvision wheel on the registry is a CUDA build; next to a CPU torch its compiled
operators fail to load and ``import torchvision`` dies with ``operator torchvision::nms does not
exist``, which takes ``open_clip`` and parts of ``transformers`` down with it. Defining the two
operator schemas that torchvision registers fake kernels for lets it import; the image
transforms we use never call those operators. Nothing is done when the compiled ops load.
"""

from __future__ import annotations

import importlib.util

_patched = False


def _compiled_ops_available() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # torchvision absent: nothing to fix
    import glob
    import os

    import torch

    for folder in spec.submodule_search_locations:
        for lib in glob.glob(os.path.join(folder, "_C*.so")):
            try:
                torch.ops.load_library(lib)
                return True
            except (OSError, RuntimeError):
                return False
    return False


def ensure_torchvision_importable() -> None:
    """Define ``torchvision::nms``/``qnms`` schemas when torchvision's compiled ops are missing."""
    global _patched
    if _patched:
        return
    _patched = True
    import sys

    if "torchvision" in sys.modules or _compiled_ops_available():
        return
    import torch

    lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 - kept alive below
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    globals()["_torchvision_lib"] = lib
