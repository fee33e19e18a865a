"""Responsiveness of the app in a headless browser: a layer change on the Overview page.

    python benchmarks/bench_app.py [--cache DIR] [--small] [--layers 0,1,3,5] [--repeats 6] [--chromium /usr/bin/chromium]

Starts ``streamlit run app.py`` on a cache that holds the demo (``--small`` for the small demo;
build it first with ``python -m alignment demo [--small]``), opens the Overview page in headless
chromium (playwright) and visits the layers of CLIP's image branch in turn, then again. It times

- **layer change**: from picking a layer in the sidebar's open list to the surface view drawn
  with that layer's map (the map's title names the layer), for a first visit (the map is read
  from the cache, the view's values built and sent) and for a revisit (the browser may still
  hold them);
- **reference**: after each layer change, from picking the other "Rows" choice of the network
  table (a rerun of the whole page in which the surface figure does not change) to the bar chart
  redrawn;

and counts the bytes the browser receives over the websocket for each. In the same browser it
then times plotly.js alone (a blank page, the plotly package's bundle) redrawing the same surface
figures in the same order: what a layer change cost when plotly drew the surface (the exports
still do), a second reference. Also reports the sizes of the surface figure's JSON and of the
WebGL view's two payloads (mesh, once per geometry; values, per map). Figures are medians; the
ratios to the reference are the ones to compare across machines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from alignment.simulation import CLIP_SPEC
from alignment.serve import app_server

TIMEOUT = 240_000  # ms

# the surface view on the page whose title names the layer, drawn (ui/surface.js marks it)
SURFACE_SHOWS = """(layer) => [...document.querySelectorAll('[data-surface-drawn]')].some(el =>
    (el.dataset.surfaceTitle || '').includes(' · L' + layer + ' · '))"""
BARS_SHOW = """(what) => [...document.querySelectorAll('.js-plotly-plot')].some(gd =>
    gd._fullLayout && (gd.layout.title.text || '').endsWith('per ' + what))"""
IDLE = """() => { const w = document.querySelector('[data-testid="stStatusWidget"]');
    return !w || !/running/i.test(w.innerText); }"""


def _surface_scenes(cache: str, small: bool, layers: list[int]) -> list:
    """The Overview surface scene (sub-01, CLIP image layer, r) for each layer."""
    from alignment import summaries
    from alignment.atlases import load_atlas
    from alignment.pipeline import LayerKey
    from alignment.figures import surface_scene

    study = summaries.open_study("demo", cache, demo_small=small)
    outlines = load_atlas("ca").labels
    out = []
    for layer in layers:
        m = summaries.metric_map(study, "01", LayerKey(CLIP_SPEC, "image", layer), "r", 0.05)
        out.append(surface_scene(m.values, "inflated", cmap=m.cmap, symmetric=m.symmetric, vmin=m.vmin,
                                 vmax=m.vmax, outlines=outlines, title=f"r · L{layer}"))
    return out


def _plotly_alone(browser, figures: list[str], visits: list[int]) -> list[float]:
    """Seconds plotly.js alone (the plotly package's bundle, a blank page of the app's width)
    takes to redraw the surface figure with each visited layer's figure."""
    import plotly

    page = browser.new_page(viewport={"width": 1500, "height": 1400})
    page.add_script_tag(path=os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js"))
    times = page.evaluate("""async ([figures, visits]) => {
        const gd = document.createElement('div');
        gd.style.width = '900px';
        document.body.appendChild(gd);
        const figs = figures.map(f => JSON.parse(f));
        await Plotly.newPlot(gd, figs[0].data, figs[0].layout);
        const times = [];
        for (const i of visits) {
            const t = performance.now();
            await Plotly.react(gd, figs[i].data, figs[i].layout);
            await new Promise(requestAnimationFrame);
            times.push((performance.now() - t) / 1000);
        }
        return times;
    }""", [figures, visits])
    page.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=os.environ.get("ALIGNMENT_CACHE", "cache"))
    ap.add_argument("--small", action="store_true", help="the small demo")
    ap.add_argument("--repeats", type=int, default=6, help="revisits of layers seen before")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--layers", default="0,1,3,5", help="CLIP image layers to visit (the demo's are 0,1,3,5)")
    args = ap.parse_args()
    import plotly.io as pio
    from playwright.sync_api import sync_playwright

    from alignment.figures import scene_figure
    from ui.surface import surface_payloads

    layers = [int(x) for x in args.layers.split(",")]
    received = [0]

    def on_ws(ws):
        ws.on("framereceived", lambda payload: received.__setitem__(0, received[0] + len(payload)))

    def timed(action, done_js, arg, page, prepare=None):
        page.wait_for_function(IDLE, timeout=TIMEOUT)
        page.wait_for_timeout(300)
        if prepare is not None:  # e.g. open a dropdown: the choice starts the clock
            prepare()
            page.wait_for_timeout(200)
        before = received[0]
        start = time.perf_counter()
        action()
        page.wait_for_function(done_js, arg=arg, timeout=TIMEOUT, polling="raf")
        elapsed = time.perf_counter() - start
        page.wait_for_function(IDLE, timeout=TIMEOUT)
        page.wait_for_timeout(300)
        return elapsed, received[0] - before

    with app_server(args.cache, small=args.small) as url, sync_playwright() as p:
        launch = {"args": ["--no-sandbox", "--disable-dev-shm-usage"]}
        if os.path.exists(args.chromium):
            launch["executable_path"] = args.chromium
        browser = p.chromium.launch(**launch)
        page = browser.new_page(viewport={"width": 1500, "height": 1400})
        page.on("websocket", on_ws)
        page.goto(f"{url}/?subject=01&model={CLIP_SPEC}&branch=image&layer={layers[0]}&kind=attn",
                  timeout=TIMEOUT)
        page.wait_for_function(SURFACE_SHOWS, arg=layers[0], timeout=TIMEOUT)
        sidebar = page.locator('[data-testid="stSidebar"]')

        def open_layers():
            sidebar.locator('[data-testid="stSelectbox"]').filter(has_text="Layer").click()

        def pick_layer(layer):
            return lambda: page.get_by_role("option", name=str(layer), exact=True).click()

        def pick_rows(rows):
            return lambda: page.get_by_text(rows, exact=True).click()

        times = {"first visit": [], "revisit": [], "reference": []}
        sizes = {k: [] for k in times}
        visits = layers[1:] + [layers[i % len(layers)] for i in range(args.repeats)]
        seen = {layers[0]}
        for i, layer in enumerate(visits):
            which = "revisit" if layer in seen else "first visit"
            seen.add(layer)
            t, b = timed(pick_layer(layer), SURFACE_SHOWS, layer, page, prepare=open_layers)
            times[which].append(t)
            sizes[which].append(b)
            rows = ("network groups", "group") if i % 2 == 0 else ("networks", "network")
            t, b = timed(pick_rows(rows[0]), BARS_SHOW, rows[1], page)
            times["reference"].append(t)
            sizes["reference"].append(b)
        scenes = _surface_scenes(args.cache, args.small, layers)
        as_json = [pio.to_json(scene_figure(s), validate=False) for s in scenes]
        times["plotly alone"] = _plotly_alone(browser, as_json, [layers.index(x) for x in visits])
        browser.close()

    med = statistics.median
    ref = med(times["reference"])
    print(f"cache {args.cache} ({'small' if args.small else 'default'} demo), CLIP image layers {layers}")
    for which, label in (("first visit", "layer change, first visit"), ("revisit", "layer change, revisit"),
                         ("reference", "reference rerun → bars drawn"),
                         ("plotly alone", "plotly.js alone redraws")):
        t = times[which]
        got = f"{med(sizes[which]) / 1e6:5.2f} MB received" if which in sizes else " " * 17
        print(f"{label:30s} {med(t) * 1e3:6.0f} ms  ({med(t) / ref:5.2f} × reference)  {got}  (n = {len(t)})")
    floor = med(times["plotly alone"])
    print(f"layer change / plotly.js alone: first visit {med(times['first visit']) / floor:.2f}, "
          f"revisit {med(times['revisit']) / floor:.2f}")
    payloads = [surface_payloads(s) for s in scenes]
    print(f"surface figure JSON (exports)  {med(map(len, as_json)) / 1e6:6.2f} MB")
    print(f"WebGL view: mesh {med(len(m) for m, _, _ in payloads) / 1e6:.2f} MB once per geometry, "
          f"values {med(len(v) for _, v, _ in payloads) / 1e6:.2f} MB per map")


if __name__ == "__main__":
    main()
