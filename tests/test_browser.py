"""The app in a real headless browser: ``streamlit run app.py`` driven by playwright + chromium.

Needs the Debian ``chromium`` at /usr/bin/chromium (skipped otherwise) and the small demo cache
(built once per session, or reused from ``ALIGNMENT_TEST_DEMO_CACHE``). Screenshots go to
``artifacts/screenshots/`` (git-ignored). Every wait is bounded.

Flow: Overview → change the layer in the sidebar → Voxel inspector: click a planted vertex on
the flat map → its time course and top ANs appear → click the top AN → Neuron inspector →
export its time course as PNG (a real PNG file). A second test opens a fresh server on a page URL:
the app's own menu shows, and a page switch keeps the view.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
START_TIMEOUT = 120  # s until streamlit answers its health check
LOAD_TIMEOUT = 240_000  # ms: the first run of a page loads meshes, atlases and the cache on 2 shared cores
STEP_TIMEOUT = 120_000  # ms


if not os.path.exists(CHROMIUM):
    pytest.skip(f"no chromium at {CHROMIUM}", allow_module_level=True)
pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(demo_cache):
    from alignment.serve import app_server

    SHOTS.mkdir(parents=True, exist_ok=True)
    with app_server(demo_cache, small=True, log=SHOTS.parent / "streamlit.log", start_timeout=START_TIMEOUT) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


# ------------------------------------------------------------------------------ helpers
def _idle(page, timeout=LOAD_TIMEOUT):
    """Wait until the script run is over (the status widget says nothing is running)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !/running/i.test(document.querySelector('[data-testid=\"stStatusWidget\"]').innerText)",
        timeout=timeout)
    page.wait_for_timeout(500)


def _shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _query(page) -> dict:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


def _errors(page) -> list[str]:
    sel = '[data-testid="stException"], [data-testid="stAlertContentError"]'
    return [e.inner_text() for e in page.locator(sel).all()]


def _planted_voxel(demo_cache) -> tuple[int, dict]:
    """The strongest planted vertex of sub-01 for the first CLIP image patch."""
    from alignment.cache import Cache
    from alignment.simulation import load_ground_truth
    from alignment.demo import demo_root

    truth = load_ground_truth(demo_root(Cache(demo_cache), small=True))
    p = next(p for p in truth.patches if p["kind"] == "attn" and p["branch"] == "image")
    maps = truth.subject_maps("01")
    amp = np.where(np.asarray(maps["patch"]) == int(p["patch"]), np.asarray(maps["amplitude"], float), -np.inf)
    return int(np.argmax(amp)), p


def _point_xy(page, voxel: int) -> tuple[float, float]:
    """Screen position of a grayordinate on the flat map (plotly's own axis conversion)."""
    xy = page.evaluate(
        """(v) => {
            for (const gd of document.querySelectorAll('.js-plotly-plot')) {
                const fl = gd._fullLayout;
                if (!fl || !fl.meta || !fl.meta.offsets) continue;   // the flat map
                for (const tr of gd._fullData) {
                    const cd = tr.customdata; if (!cd) continue;
                    for (let i = 0; i < cd.length; i++) {
                        if (cd[i] === v) {
                            const r = gd.getBoundingClientRect();
                            return [r.left + fl._size.l + fl.xaxis.l2p(tr.x[i]),
                                    r.top + fl._size.t + fl.yaxis.l2p(tr.y[i])];
                        }
                    }
                }
            }
            return null;
        }""", voxel)
    assert xy is not None, f"voxel {voxel} not found on the flat map"
    return xy[0], xy[1]


# the surface view whose title names the layer, drawn (ui/surface.js marks its element)
SURFACE_DRAWN = """(layer) => [...document.querySelectorAll('[data-surface-drawn]')].some(el =>
    (el.dataset.surfaceTitle || '').includes(' · L' + layer + ' · '))"""


def _check_surface_view(page):
    """The Overview's surface view shows the planted layer's map (coloured vertices on grey
    anatomy) and names value and hemisphere under the pointer, left hemisphere on the left."""
    import io

    from PIL import Image

    view = page.locator('[data-surface-drawn]').first
    canvas = view.locator("canvas.gl")
    pixels = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    grey = (np.abs(r - g) < 8) & (np.abs(g - b) < 8) & (r < 235)
    coloured = np.abs(r - b) > 60
    assert grey.mean() > 0.05 and coloured.mean() > 0.001, (grey.mean(), coloured.mean())
    bb = canvas.bounding_box()
    for side, fx in (("left", 0.3), ("right", 0.7)):
        page.mouse.move(bb["x"] + fx * bb["width"], bb["y"] + 0.5 * bb["height"])
        tip = view.locator(".hover")
        tip.wait_for(state="visible", timeout=STEP_TIMEOUT)
        assert tip.inner_text().endswith(side), (side, tip.inner_text())
    page.mouse.move(0, 0)


# ------------------------------------------------------------------------------ the test
def test_browser_flow(server, browser, demo_cache):
    target, patch = _planted_voxel(demo_cache)
    ctx = browser.new_context(viewport={"width": 1500, "height": 2200}, accept_downloads=True)
    page = ctx.new_page()
    page.set_default_timeout(STEP_TIMEOUT)
    try:
        # 1. Overview, with the planted layer of the CLIP image branch
        received = [0]
        page.on("websocket", lambda ws: ws.on("framereceived",
                                              lambda f: received.__setitem__(0, received[0] + len(f))))
        page.goto(server + f"/?subject=01&model={patch['model']}&branch=image&layer=0&kind=attn",
                  timeout=LOAD_TIMEOUT)
        page.get_by_role("heading", name="Overview").wait_for(timeout=LOAD_TIMEOUT)
        page.wait_for_function(SURFACE_DRAWN, arg=0, timeout=LOAD_TIMEOUT)
        _idle(page)
        _shot(page, "01_overview")
        assert _query(page).get("layer") == "0"

        # 2. change the layer in the sidebar: the surface view draws the planted layer's map
        sidebar = page.locator('[data-testid="stSidebar"]')
        box = sidebar.locator('[data-testid="stSelectbox"]').filter(has_text="Layer")
        before = received[0]
        box.click()
        page.get_by_role("option", name=str(patch["layer"]), exact=True).click()
        page.wait_for_function(f"() => new URLSearchParams(location.search).get('layer') === '{patch['layer']}'",
                               timeout=STEP_TIMEOUT)
        page.wait_for_function(SURFACE_DRAWN, arg=patch["layer"], timeout=STEP_TIMEOUT)
        _idle(page)
        _shot(page, "02_overview_layer")
        assert not _errors(page), _errors(page)
        # the mesh (1.2 MB) stays in the browser: a new map sends its values only (0.33 MB)
        assert received[0] - before < 0.8e6, received[0] - before
        _check_surface_view(page)

        # 3. Voxel inspector: click the planted vertex on the flat map
        sidebar.get_by_role("link", name="Voxel inspector").click()
        page.get_by_role("heading", name="Voxel inspector").wait_for(timeout=LOAD_TIMEOUT)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g._fullLayout && g._fullLayout.meta"
            " && g._fullLayout.meta.offsets)", timeout=LOAD_TIMEOUT)
        _idle(page)
        _shot(page, "03_voxel_inspector_empty")
        x, y = _point_xy(page, target)
        page.mouse.move(x, y)
        page.wait_for_timeout(300)
        page.mouse.click(x, y)
        page.wait_for_function("() => new URLSearchParams(location.search).get('voxel') !== null",
                               timeout=STEP_TIMEOUT)
        voxel = int(_query(page)["voxel"])
        page.get_by_text(f"Time course — voxel {voxel}").wait_for(timeout=LOAD_TIMEOUT)
        page.get_by_role("heading", name="Top artificial neurons").wait_for(timeout=LOAD_TIMEOUT)
        page.locator('[data-testid="stImage"]').first.wait_for(timeout=LOAD_TIMEOUT)
        _idle(page)
        _shot(page, "04_voxel_inspector_clicked")
        assert not _errors(page), _errors(page)
        # a neighbour of the target is fine (points overlap at this zoom), a planted one is expected
        from alignment.cache import Cache
        from alignment.simulation import load_ground_truth
        from alignment.demo import demo_root

        truth = load_ground_truth(demo_root(Cache(demo_cache), small=True))
        assert int(truth.subject_maps("01")["patch"][voxel]) == int(patch["patch"]), (voxel, target)
        metric = page.locator('[data-testid="stMetric"]').filter(has_text="Voxel").first
        assert str(voxel) in metric.inner_text()

        # 4. the top AN row → Neuron inspector
        grid = page.locator('[data-testid="stDataFrame"]').first
        grid.scroll_into_view_if_needed()
        bb = grid.bounding_box()
        page.mouse.click(bb["x"] + 12, bb["y"] + 35 + 17)  # row-selector cell of the first data row
        page.get_by_role("heading", name="Neuron inspector").wait_for(timeout=LOAD_TIMEOUT)
        page.wait_for_function("() => new URLSearchParams(location.search).get('an') !== null", timeout=STEP_TIMEOUT)
        q = _query(page)
        assert (q["model"], q["branch"], q["layer"], q["an"]) == \
            (patch["model"], patch["branch"], str(patch["layer"]), str(patch["an_index"])), q
        page.get_by_text(f"AN {patch['an_index']} ·").first.wait_for(timeout=LOAD_TIMEOUT)
        page.get_by_role("heading", name="Atom loadings").wait_for(timeout=LOAD_TIMEOUT)
        _idle(page)
        page.locator(".js-plotly-plot").last.wait_for(timeout=LOAD_TIMEOUT)
        _shot(page, "05_neuron_inspector")
        assert not _errors(page), _errors(page)

        # 5. export the AN's time course as PNG
        page.get_by_role("button", name="Export").first.click()
        png = page.get_by_role("button", name="PNG (static image)")
        png.wait_for(timeout=STEP_TIMEOUT)
        with page.expect_download(timeout=STEP_TIMEOUT) as dl:
            png.click()
        out = SHOTS / "exported_an_timecourse.png"
        dl.value.save_as(str(out))
        data = out.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        _shot(page, "06_neuron_inspector_export")
    finally:
        if not page.is_closed():
            try:
                _shot(page, "zz_last")
            except Exception:  # noqa: BLE001 - a screenshot must not hide the real failure
                pass
        ctx.close()


def test_fresh_server_opened_on_a_page_url_shows_the_menu(demo_cache, browser):
    """The first request of a server process on a page URL runs that page without app.py
    (Streamlit's pages/-folder mode); the sidebar must still show the app's own menu, by section
    and title — not the pages/ files by name — and its links must keep the view."""
    from ui import PAGES
    from alignment.serve import app_server

    with app_server(demo_cache, small=True, start_timeout=START_TIMEOUT) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(url + "/integration?subject=01", timeout=LOAD_TIMEOUT)
            page.get_by_role("heading", name="Integration sites").wait_for(timeout=LOAD_TIMEOUT)
            _idle(page)
            _shot(page, "07_fresh_server_page_url")
            assert page.get_by_text("Variance factor λ of the block test").is_visible()  # and each subject's λ
            sidebar = page.locator('[data-testid="stSidebar"]')
            links = [a.inner_text().split("\n")[-1] for a in sidebar.locator("a").all()]
            assert links == [title for pages in PAGES.values() for _, title, _ in pages], links
            assert sidebar.get_by_text("Inspect", exact=True).is_visible()
            assert not page.locator('[data-testid="stSidebarNav"]').count()
            assert not _errors(page), _errors(page)
            sidebar.get_by_role("link", name="Compare").click()
            page.get_by_role("heading", name="Compare").wait_for(timeout=LOAD_TIMEOUT)
            assert _query(page).get("subject") == "01"
        finally:
            page.close()


# a cortical map drawn (ui/surface.js marks its element)
MESH_SHOWS = "() => !!document.querySelector('[data-surface-drawn]')"


def test_cold_start_shows_a_map_while_the_demo_still_computes(browser, tmp_path):
    """An empty cache: the app starts the demo in the background and draws the first map
    before the build has finished; the build outlives the browser session."""
    import signal
    import time

    from alignment.background import read_status
    from alignment.serve import app_server

    cache = tmp_path / "cache"
    cache.mkdir()
    start = time.monotonic()
    try:
        with app_server(str(cache), small=True, log=tmp_path / "streamlit.log", start_timeout=START_TIMEOUT) as url:
            ctx = browser.new_context(viewport={"width": 1500, "height": 1400})
            page = ctx.new_page()
            page.goto(url, timeout=LOAD_TIMEOUT)
            page.get_by_text("Preparing the simulated demo in the background").wait_for(timeout=LOAD_TIMEOUT)
            page.wait_for_function(MESH_SHOWS, timeout=15 * 60_000, polling=1000)
            first_map = time.monotonic() - start
            status = read_status(cache, small=True)
            _shot(page, "06_cold_start_first_map")
            print(f"cold start: first map after {first_map:.0f} s, build at {status.text()}")
            assert status.active and status.done < status.total, status
            assert not _errors(page), _errors(page)
            assert "computing the demo" in page.locator('[data-testid="stSidebar"]').inner_text()
            ctx.close()  # closing the browser does not stop the build
        time.sleep(2)
        assert read_status(cache, small=True).active
    finally:
        status = read_status(cache, small=True)
        if status is not None and status.active:
            os.killpg(status.pid, signal.SIGTERM)
