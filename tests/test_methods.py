"""The methods document: every page opens sections that exist, every analysis is documented."""

import ast
import re
from pathlib import Path

import pytest

from alignment.stages import STAGES
from ui.view import METHODS_FILE, PAGES, methods_sections

ROOT = Path(__file__).resolve().parents[1]


def _methods_of(script: str) -> tuple:
    """The ``methods_of`` argument of the page's ``S.page(...)`` call (read from its source)."""
    for node in ast.walk(ast.parse((ROOT / script).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "page":
            for kw in node.keywords:
                if kw.arg == "methods_of":
                    return ast.literal_eval(kw.value)
    return ()


def test_sections_split_at_second_level_headings():
    text = "# Title\nintro\n## A\nline 1\n\n### sub\nline 2\n## B\nonly\n"
    assert methods_sections(text) == {"A": "line 1\n\n### sub\nline 2", "B": "only"}


@pytest.mark.parametrize("script", [s for pages in PAGES.values() for s, _, _ in pages if "methods" not in s])
def test_every_page_opens_existing_sections(script):
    headings = _methods_of(script)
    assert headings, f"{script} opens no methods section"
    sections = methods_sections()
    assert set(headings) <= set(sections), set(headings) - set(sections)


def test_every_analysis_says_what_is_cross_validated_and_its_stage():
    text = METHODS_FILE.read_text(encoding="utf-8")
    documented = set(re.findall(r"stage\s+`(\w+)`", text))
    # the library's stages (tests register toy stages of their own)
    builtin = {name for name, s in STAGES.items() if s.compute.__module__.startswith("alignment.")}
    assert builtin <= documented, f"stages without a methods entry: {sorted(builtin - documented)}"
    for heading, body in methods_sections().items():
        if heading not in ("Data and folds", "Networks"):
            assert "Cross-validated" in body or "In-sample" in body or "in-sample" in body, heading
