"""What defines a view of the app, and how it travels in the URL (no Streamlit).

:class:`ViewState` (frozen) holds everything that defines a view: dataset, subject (or
``"group"``), model, branch, layer, condition, AN kind, atlas, FDR threshold, surface, metric,
selected voxel / AN, presentation mode. It round-trips through the URL query string
(:meth:`ViewState.to_query` / :meth:`ViewState.from_query`), so a pasted link restores the view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from alignment.conventions import AN_KINDS, CONDITIONS, GROUP, MAP_METRICS

__all__ = [
    "METHODS_FILE",
    "PAGES",
    "SURFACE_CHOICES",
    "ViewState",
    "describe",
    "methods_sections",
    "parse_query",
    "set_label",
]

#: the surfaces (:data:`alignment.spaces.SURFACES`) the sidebar offers, per space; the first is the default
SURFACE_CHOICES = {"fsLR32k": ("inflated", "very_inflated", "flat"), "fsaverage5": ("inflated", "flat")}
#: the app's pages by menu section: (script, title, icon); the first one is the default page
PAGES = {
    "Explore": (("pages/overview.py", "Overview", ":material/neurology:"),
                ("pages/layers.py", "Layers", ":material/stacked_line_chart:"),
                ("pages/polarity.py", "Polarity", ":material/exposure:"),
                ("pages/modality.py", "Modality", ":material/image:"),
                ("pages/redundancy.py", "Redundancy", ":material/join_inner:"),
                ("pages/integration.py", "Integration sites", ":material/merge:"),
                ("pages/compare.py", "Compare", ":material/compare:"),
                ("pages/rsa.py", "Concept RSA", ":material/grid_on:")),
    "Inspect": (("pages/voxel_inspector.py", "Voxel inspector", ":material/my_location:"),
                ("pages/neuron_inspector.py", "Neuron inspector", ":material/hub:")),
    "Run": (("pages/compute.py", "Compute & cache", ":material/settings:"),
            ("pages/methods.py", "Methods", ":material/menu_book:")),
}
#: what each map means, one ``## `` section per analysis; pages open the sections they draw from
METHODS_FILE = Path(__file__).resolve().parents[1] / "docs" / "methods.md"


def methods_sections(text: str | None = None) -> dict[str, str]:
    """The methods document split at its ``## `` headings: ``{heading: markdown body}``."""
    text = METHODS_FILE.read_text(encoding="utf-8") if text is None else text
    sections: dict[str, list[str]] = {}
    current_heading = None
    for line in text.splitlines():
        if line.startswith("## "):
            current_heading = line[3:].strip()
            sections[current_heading] = []
        elif current_heading is not None:
            sections[current_heading].append(line)
    return {h: "\n".join(lines).strip() for h, lines in sections.items()}


# ==========================================================================================
# the view state
# ==========================================================================================
@dataclass(frozen=True)
class ViewState:
    """Everything that defines a view. All fields travel in the URL query string.

    ``model`` / ``branch`` empty: the first available. ``voxel`` (grayordinate index) and
    ``an`` (AN index within the layer) are None when nothing is selected.
    """

    dataset: str = "demo"
    subject: str = GROUP
    model: str = ""
    branch: str = ""
    layer: int = 0
    condition: str = "image+text"
    kind: str = "attn"
    atlas: str = "ca"
    fdr_q: float = 0.05
    surface: str = "inflated"
    metric: str = "r"
    voxel: int | None = None
    an: int | None = None
    presentation: bool = False

    # -------------------------------------------------------------------- URL
    def to_query(self) -> dict[str, str]:
        """Query-string parameters (str → str); None fields are left out."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, bool):
                v = "1" if v else "0"
            elif isinstance(v, float):
                v = f"{v:g}"
            out[f.name] = str(v)
        return out

    @classmethod
    def from_query(cls, params: Mapping[str, Any]) -> "ViewState":
        """Parse query parameters; invalid values fall back to defaults (see :func:`parse_query`)."""
        return parse_query(params)[0]

    @property
    def is_demo(self) -> bool:
        """The simulated movie demo."""
        return self.dataset == "demo"

    @property
    def is_concept_demo(self) -> bool:
        """The simulated concept demo (built with the movie demo)."""
        from alignment.demo import CONCEPT_DEMO

        return self.dataset == CONCEPT_DEMO

    @property
    def is_group(self) -> bool:
        return self.subject == GROUP

    def layer_key(self):
        """The :class:`~alignment.pipeline.LayerKey` of (model, branch, layer, kind, condition)."""
        from alignment.pipeline import LayerKey

        return LayerKey(self.model, self.branch, int(self.layer), self.kind, self.condition)


def _first(v):
    if isinstance(v, (list, tuple)):
        return v[-1] if v else ""
    return v


def parse_query(params: Mapping[str, Any]) -> tuple[ViewState, list[str]]:
    """Parse query parameters into a :class:`ViewState` and a list of warnings.

    Unknown keys are ignored; values that do not parse (a layer that is not an integer, an
    unknown condition, a threshold outside (0, 1), ...) take the default and add a warning.
    Whether a model / branch / layer exists in the cache is checked later, by :func:`sidebar`.
    """
    d = ViewState()
    vals: dict[str, Any] = {}
    warns: list[str] = []
    p = {k: _first(v) for k, v in dict(params).items()}

    def bad(name, raw, why=""):
        warns.append(f"URL parameter {name}={raw!r} is not valid{(' (' + why + ')') if why else ''}; "
                     f"using {getattr(d, name)!r}")

    for name in ("dataset", "subject", "model", "branch", "atlas"):  # checked against the dataset later
        if name in p:
            raw = str(p[name]).strip()
            if raw or name in ("model", "branch"):
                vals[name] = raw
            else:
                bad(name, p[name])
    surfaces = tuple(dict.fromkeys(s for per_space in SURFACE_CHOICES.values() for s in per_space))
    for name, allowed in (("condition", CONDITIONS), ("kind", AN_KINDS), ("surface", surfaces),
                          ("metric", MAP_METRICS)):
        if name in p:
            raw = str(p[name]).strip()
            if raw in allowed:
                vals[name] = raw
            else:
                bad(name, p[name], "expected one of " + ", ".join(allowed))
    for name in ("layer", "voxel", "an"):
        if name in p and str(p[name]).strip() != "":
            raw = str(p[name]).strip()
            try:
                v = int(raw)
                if v < 0:
                    raise ValueError
                vals[name] = v
            except ValueError:
                bad(name, p[name], "expected a non-negative integer")
    if "fdr_q" in p:
        try:
            v = float(p["fdr_q"])
            if not (math.isfinite(v) and 0 < v <= 0.5):
                raise ValueError
            vals["fdr_q"] = v
        except (TypeError, ValueError):
            bad("fdr_q", p["fdr_q"], "expected a number in (0, 0.5]")
    if "presentation" in p:
        raw = str(p["presentation"]).strip().lower()
        if raw in ("1", "true", "yes", "on"):
            vals["presentation"] = True
        elif raw in ("0", "false", "no", "off", ""):
            vals["presentation"] = False
        else:
            bad("presentation", p["presentation"], "expected 1 or 0")
    return replace(d, **vals), warns


def set_label(parts: tuple) -> str:
    """A (model, branch, kind[, condition]) choice as the pickers show it."""
    return " · ".join([str(parts[0]).replace("random:", ""), *map(str, parts[1:])])


def describe(state: ViewState, key=None, subject: str | None = None, layer: bool = True) -> str:
    """One-line label of a view: model · branch · layer · kind · condition · subject."""
    k = key or state.layer_key()
    subj = subject or state.subject
    who = "group" if subj == GROUP else f"sub-{subj}"
    lay = f" · L{k.layer}" if layer else ""
    return f"{k.model} · {k.branch}{lay} · {k.kind} · {k.condition} · {who}"
