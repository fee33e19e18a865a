"""Tests of the content-addressed result cache (alignment/cache.py) and of its command line
(alignment/cli_cache.py).

Crash and concurrency tests use real processes. Subprocesses load ``alignment/cache.py`` directly
from its file (it depends on numpy, filelock and the standard library only), so they start in a
fraction of a second instead of importing the whole package (torch).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from alignment import cache as cache_mod
from alignment.cache import (
    Cache,
    CacheCorruptionWarning,
    Entry,
    file_digest,
    fingerprint,
)
from alignment.cli_cache import (
    add_cli,
    format_du,
    format_entries,
    format_size,
    parse_duration,
)

CACHE_PY = str(Path(cache_mod.__file__).resolve())

# Prologue of every subprocess: load the module under test by path (argv[1]).
_PROLOGUE = r"""
import importlib.util, json, os, sys, time
import numpy as np
_spec = importlib.util.spec_from_file_location("alignment_cache_under_test", sys.argv[1])
cm = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = cm
_spec.loader.exec_module(cm)
"""

GUARD_S = 60  # hang guard only: never a performance threshold


def _spawn(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _PROLOGUE + code, CACHE_PY, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _run(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    proc = _spawn(code, *args, env=env)
    out, err = proc.communicate(timeout=GUARD_S)
    assert proc.returncode == 0, err
    return out


def _wait_for(path: Path, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + GUARD_S
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"subprocess exited early: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.02)


def _count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _leftovers(root: Path, prefix: str) -> list[Path]:
    return [p for p in root.glob(f"*/{prefix}*")]


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "cache")


# ------------------------------------------------------------------------------------------
# Round trip and layout
# ------------------------------------------------------------------------------------------


def _sample_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "r": rng.standard_normal((5, 7)).astype(np.float32),
        "fortran": np.asfortranarray(rng.standard_normal((4, 3))),
        "strided": np.arange(20, dtype=np.int64)[::3],
        "mask": np.array([True, False, True]),
        "labels": np.array(["Visual1", "Language", ""]),
        "when": np.array(["2020-01-01", "2021-06-30"], dtype="M8[D]"),
        "scalar": np.array(3.5),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "big_endian": np.arange(4, dtype=">i4"),
        # names np.savez would mistake for its own arguments
        "file": np.ones(2),
        "allow_pickle": np.zeros(2),
    }


def test_round_trip_arrays_and_meta(cache: Cache) -> None:
    arrays = _sample_arrays()
    key = cache.key("encoding", {"layer": 3})
    user_meta = {"description": "ridge r", "n_folds": np.int64(4), "mesh": Path("a/b.gii"), "params": {"layer": 3}}
    stored = cache.put("encoding", key, arrays, user_meta)
    assert isinstance(stored, Entry)

    entry = cache.get("encoding", key)
    assert entry is not None
    assert entry.key == key and entry.stage == "encoding"
    assert entry.path == cache.root / "encoding" / key[:2] / key
    assert entry.keys() == list(arrays)  # storage order kept
    for name, arr in arrays.items():
        got = entry[name]
        assert got.dtype == arr.dtype and got.shape == arr.shape, name
        np.testing.assert_array_equal(got, arr)
        assert not got.flags.writeable  # cached results cannot be modified by accident
    assert "r" in entry and "nope" not in entry
    with pytest.raises(KeyError, match="no array 'nope'"):
        entry["nope"]
    assert entry.nbytes == sum(a.nbytes for a in arrays.values())
    assert entry.size == sum(p.stat().st_size for p in entry.path.iterdir())

    m = entry.meta
    assert m["description"] == "ridge r" and m["n_folds"] == 4 and m["mesh"] == "a/b.gii"
    assert m["stage"] == "encoding" and m["key"] == key and m["params"] == {"layer": 3}
    assert m["arrays"]["r"] == {"dtype": "float32", "shape": [5, 7], "nbytes": 140}
    assert set(m["integrity"]) >= {"arrays_sha256", "meta_sha256"}
    assert m["integrity"]["arrays_sha256"] == file_digest(entry.path / "arrays.npz")
    dt.datetime.fromisoformat(m["created"])

    # Plain, browsable files: a standard npz that numpy reads without pickle, and readable JSON.
    assert sorted(p.name for p in entry.path.iterdir()) == ["arrays.npz", "meta.json"]
    with np.load(entry.path / "arrays.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["r"], arrays["r"])
    assert json.loads((entry.path / "meta.json").read_text())["key"] == key
    # No temp folders or lock files left behind.
    assert not _leftovers(cache.root, ".tmp-") and not list(cache.root.rglob("*.lock"))


def test_arrays_are_loaded_lazily(cache: Cache) -> None:
    key = cache.key("s", 1)
    cache.put("s", key, {"a": np.arange(3), "b": np.arange(4)})
    entry = cache.get("s", key)
    assert "loaded=[]" in repr(entry.arrays)
    entry["a"]
    assert "loaded=['a']" in repr(entry.arrays)
    assert set(entry.load()) == {"a", "b"}


def test_empty_result_and_meta_only(cache: Cache) -> None:
    key = cache.key("summary", {"x": 1})
    cache.put("summary", key, {}, {"mean_r": 0.25})
    entry = cache.get("summary", key)
    assert entry is not None and entry.keys() == [] and entry.meta["mean_r"] == 0.25


def test_object_arrays_are_rejected_and_nothing_is_written(cache: Cache) -> None:
    key = cache.key("s", 1)
    with pytest.raises(ValueError, match="object arrays cannot be cached.*pickle"):
        cache.put("s", key, {"ok": np.ones(2), "bad": np.array([{"a": 1}, None], dtype=object)})
    assert cache.get("s", key) is None
    assert not _leftovers(cache.root, ".tmp-")


def test_invalid_names_are_rejected(cache: Cache) -> None:
    key = cache.key("s", 1)
    for stage in ["../evil", ".hidden", "a/b", "", "total"]:
        with pytest.raises(ValueError, match="stage"):
            cache.put(stage, key, {"a": np.ones(1)})
    for bad_key in ["../../etc", "ABC", "12", key + "/x"]:
        with pytest.raises(ValueError, match="key"):
            cache.get("s", bad_key)
    with pytest.raises(ValueError, match="array name"):
        cache.put("s", key, {"../x": np.ones(1)})
    with pytest.raises(ValueError, match="reserved"):
        cache.put("s", key, {"a": np.ones(1)}, {"integrity": "mine"})
    with pytest.raises(TypeError, match="meta"):
        cache.put("s", key, {"a": np.ones(1)}, {"obj": object()})
    assert not cache.root.exists() or not _leftovers(cache.root, ".tmp-")


def test_default_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGNMENT_CACHE", str(tmp_path / "from-env"))
    assert Cache().root == tmp_path / "from-env"
    monkeypatch.delenv("ALIGNMENT_CACHE")
    monkeypatch.chdir(tmp_path)
    assert Cache().root == tmp_path / "cache"
    assert not (tmp_path / "cache").exists()  # nothing created before the first write


def test_put_existing_key_keeps_first_and_replaces_corrupt(cache: Cache) -> None:
    key = cache.key("s", 1)
    first = cache.put("s", key, {"a": np.arange(3)})
    again = cache.put("s", key, {"a": np.arange(3)})
    assert again.meta["created_unix"] == first.meta["created_unix"]
    assert not _leftovers(cache.root, ".tmp-")
    (first.path / "arrays.npz").write_bytes(b"junk")
    with pytest.warns(CacheCorruptionWarning):
        fixed = cache.put("s", key, {"a": np.arange(3)})
    np.testing.assert_array_equal(cache.get("s", key)["a"], np.arange(3))
    assert fixed.meta["created_unix"] != first.meta["created_unix"]


# ------------------------------------------------------------------------------------------
# Fingerprints and keys
# ------------------------------------------------------------------------------------------


def _complex_params() -> dict:
    return {
        "model": "clip:ViT-B-32@openai",
        "layers": (1, 2, 3),
        "alpha": [0.1, 1.0, 10.0],
        "flags": {"cls": False, "mean": True, "none": None},
        "weights": np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3),
        "blob": b"\x00\x01binary",
        "path": Path("data/sub-01/run1.npy"),
        "nested": [{"z": 1, "a": 2}, {"set": {3, 1, 2}}],
        "unicode": "sujet-é-β",
        "big": 2**70,
        "nan": float("nan"),
    }


def test_fingerprint_is_stable_across_processes() -> None:
    here = fingerprint(_complex_params())
    code = (
        "import pathlib\n"
        "params = {\n"
        "  'nan': float('nan'), 'big': 2**70, 'unicode': 'sujet-é-β',\n"
        "  'nested': [{'a': 2, 'z': 1}, {'set': {2, 3, 1}}],\n"
        "  'path': pathlib.Path('data/sub-01/run1.npy'), 'blob': b'\\x00\\x01binary',\n"
        "  'weights': np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3),\n"
        "  'flags': {'none': None, 'mean': True, 'cls': False},\n"
        "  'alpha': [0.1, 1.0, 10.0], 'layers': (1, 2, 3), 'model': 'clip:ViT-B-32@openai'}\n"
        "print(cm.fingerprint(params))\n"
    )
    # Different hash seeds: nothing may depend on Python's salted hash() or on insertion order.
    outs = {_run(code, env={"PYTHONHASHSEED": seed}).strip() for seed in ("1", "987")}
    assert outs == {here}


def test_fingerprint_golden_value() -> None:
    # Pins the encoding: if this changes, every existing cache key changes. Update it only on
    # purpose (and say so in the changelog).
    params = {"a": 1, "b": [1.5, "x", None, True], "c": np.arange(3, dtype=np.int32)}
    assert fingerprint(params) == fingerprint(dict(reversed(list(params.items()))))
    assert fingerprint(params) == GOLDEN


GOLDEN = "23d6a8fa63a823d502b9e5fd5ff5dd008d0639b9cbbed8e6692baaafe4abbad8"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"x": 1}, {"x": 2}),
        ({"x": 1}, {"y": 1}),
        ({"x": 1}, {"x": 1.0}),
        ({"x": 1}, {"x": True}),
        ({"x": 1}, {"x": "1"}),
        ([1, 2], [2, 1]),
        ([1, [2]], [[1], 2]),
        ("ab", b"ab"),
        ("ab", Path("ab")),
        (None, 0),
        (0.0, -0.0),
        ({"s": "a", "t": "bc"}, {"s": "ab", "t": "c"}),  # no ambiguity from concatenation
        (np.zeros(4, np.float32), np.zeros(4, np.float64)),
        (np.zeros(4), np.zeros((2, 2))),
        (np.arange(4.0), np.arange(4.0) + np.array([0, 0, 0, 1e-12])),
        (np.zeros(0, np.float32), np.zeros((0, 3), np.float32)),
    ],
)
def test_fingerprint_is_sensitive(a: object, b: object) -> None:
    assert fingerprint(a) != fingerprint(b)


def test_fingerprint_equivalences_and_errors() -> None:
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint((1, 2)) == fingerprint([1, 2])  # params that went through JSON keep their key
    assert fingerprint(np.int64(3)) == fingerprint(3)
    assert fingerprint(np.float64(0.5)) == fingerprint(0.5)
    assert fingerprint({3, 1, 2}) == fingerprint({2, 3, 1})
    x = np.arange(6.0).reshape(2, 3)
    assert fingerprint(x.T) == fingerprint(np.ascontiguousarray(x.T))  # memory layout is irrelevant
    assert fingerprint(np.arange(4, dtype=">f8")) == fingerprint(np.arange(4, dtype="<f8"))

    @dataclasses.dataclass
    class Cfg:
        k: int = 64
        l1: float = 0.1

    assert fingerprint(Cfg()) == fingerprint(Cfg()) != fingerprint(Cfg(k=32))
    with pytest.raises(TypeError, match="unsupported type"):
        fingerprint({"f": object()})
    with pytest.raises(TypeError, match="object arrays"):
        fingerprint(np.array([1, "a"], dtype=object))
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="self-referencing"):
        fingerprint(loop)


def test_key_depends_on_stage_version_params(cache: Cache) -> None:
    k = cache.key("encoding", {"layer": 1}, version=1)
    assert len(k) == 64 and int(k, 16) >= 0
    assert k == cache.key("encoding", {"layer": 1})
    assert k != cache.key("encoding", {"layer": 1}, version=2)
    assert k != cache.key("mapping", {"layer": 1})
    assert k != cache.key("encoding", {"layer": 2})


def test_file_digest_is_by_content(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.bin", tmp_path / "sub" / "b.bin", tmp_path / "c.bin"
    b.parent.mkdir()
    a.write_bytes(os.urandom(3_000_000))
    b.write_bytes(a.read_bytes())
    c.write_bytes(a.read_bytes()[:-1] + b"\x00")
    assert file_digest(a) == file_digest(b) != file_digest(c)
    assert fingerprint(a) != fingerprint(b)  # paths themselves are fingerprinted by name


# ------------------------------------------------------------------------------------------
# Crashes: a writer killed with SIGKILL
# ------------------------------------------------------------------------------------------

_KILLED_WRITER = r"""
root, stage, reached, marker, point = sys.argv[2:7]
def hook(p, tmp):
    if p == point:
        open(reached, "w").write(str(tmp))
        time.sleep(600)  # killed here
cm._write_hook = hook
def compute():
    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
    return {"x": np.arange(1_000_000, dtype=np.float64)}
cm.Cache(root).get_or_compute(stage, {"n": 1}, compute)
"""


@pytest.mark.parametrize("point", ["arrays-written", "before-rename"])
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkilled_writer_is_never_served_and_is_recomputed(tmp_path: Path, point: str) -> None:
    cache = Cache(tmp_path / "cache")
    reached, marker = tmp_path / "reached", tmp_path / "marker"
    proc = _spawn(_KILLED_WRITER, cache.root, "enc", reached, marker, point)
    try:
        _wait_for(reached, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=GUARD_S)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    key = cache.key("enc", {"n": 1})
    tmp_dirs = _leftovers(cache.root, ".tmp-")
    assert [str(p) for p in tmp_dirs] == [reached.read_text()]  # the half-done write, set aside
    assert (tmp_dirs[0] / "arrays.npz").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unfinished write is not even "corrupt": just absent
        assert cache.get("enc", key) is None
    assert cache.entries() == []
    assert _count_lines(marker) == 1

    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"x": np.arange(1_000_000, dtype=np.float64)}

    entry = cache.get_or_compute("enc", {"n": 1}, compute)  # the lock died with the writer
    assert calls == [1]
    np.testing.assert_array_equal(entry["x"], np.arange(1_000_000, dtype=np.float64))
    # The next write cleaned up the dead writer's folder (its pid is gone on this host).
    assert not _leftovers(cache.root, ".tmp-")
    assert [e.key for e in cache.entries()] == [key]


def test_remove_stale_leftovers(cache: Cache) -> None:
    key = cache.key("s", 1)
    cache.put("s", key, {"a": np.arange(3)})
    stage_dir = cache.root / "s"
    tag = cache_mod._owner_tag()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    dead_tmp = stage_dir / f".tmp-{dead.pid}-00000000-{tag}"  # writer gone
    old_tmp = stage_dir / f".tmp-1-00000000-otherhost~1"  # another host, untouched for an hour
    live_tmp = stage_dir / f".tmp-{os.getpid()}-00000000-{tag}"  # a write in progress
    for d in (dead_tmp, old_tmp, live_tmp):
        d.mkdir()
        (d / "arrays.npz").write_bytes(b"partial")
    hour_ago = time.time() - 3600
    os.utime(old_tmp / "arrays.npz", (hour_ago, hour_ago))
    os.utime(old_tmp, (hour_ago, hour_ago))
    (stage_dir / ".corrupt-abc").mkdir()

    assert cache.remove_stale() == 3
    assert live_tmp.exists() and not dead_tmp.exists() and not old_tmp.exists()
    assert not (stage_dir / ".corrupt-abc").exists()
    assert cache.get("s", key) is not None  # entries untouched


# ------------------------------------------------------------------------------------------
# Corruption
# ------------------------------------------------------------------------------------------


def _truncate(entry: Entry) -> None:
    p = entry.path / "arrays.npz"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip_byte(entry: Entry) -> None:
    p = entry.path / "arrays.npz"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the checksum can tell
    p.write_bytes(bytes(data))


def _garbage_meta(entry: Entry) -> None:
    (entry.path / "meta.json").write_bytes(b"\x00{not json")


def _edited_meta(entry: Entry) -> None:
    meta = json.loads((entry.path / "meta.json").read_text())
    meta["params"] = {"n": 2}  # valid JSON, but no longer what was hashed
    (entry.path / "meta.json").write_text(json.dumps(meta))


def _empty_meta(entry: Entry) -> None:
    (entry.path / "meta.json").write_text("")


def _missing_npz(entry: Entry) -> None:
    (entry.path / "arrays.npz").unlink()


def _missing_meta(entry: Entry) -> None:
    (entry.path / "meta.json").unlink()


def _swapped_arrays(entry: Entry) -> None:
    # A valid npz with matching size, but not the stored one.
    p = entry.path / "arrays.npz"
    with open(p, "r+b") as f:
        f.seek(-40, os.SEEK_END)
        tail = f.read()
    p.write_bytes(p.read_bytes()[:-40] + tail[::-1])


CORRUPTIONS = [_truncate, _flip_byte, _garbage_meta, _edited_meta, _empty_meta, _missing_npz, _missing_meta, _swapped_arrays]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__.strip("_"))
def test_corruption_is_detected_warned_and_recomputed(cache: Cache, corrupt) -> None:
    calls = []
    expected = np.random.default_rng(1).standard_normal((50, 20))

    def compute() -> dict:
        calls.append(1)
        return {"x": expected}

    entry = cache.get_or_compute("enc", {"n": 1}, compute)
    corrupt(entry)

    with pytest.warns(CacheCorruptionWarning, match=r"enc/[0-9a-f]+ is corrupt.*moved aside"):
        assert cache.get("enc", entry.key) is None  # never served
    assert not entry.path.exists()
    moved = _leftovers(cache.root, ".corrupt-")
    assert len(moved) == 1 and moved[0].name.startswith(f".corrupt-{entry.key}")

    again = cache.get_or_compute("enc", {"n": 1}, compute)
    assert len(calls) == 2
    np.testing.assert_array_equal(again["x"], expected)
    assert cache.remove_stale() == 1 and not _leftovers(cache.root, ".corrupt-")


def test_get_or_compute_recomputes_a_corrupt_entry_directly(cache: Cache) -> None:
    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"x": np.arange(10)}

    entry = cache.get_or_compute("enc", {"n": 1}, compute)
    _flip_byte(entry)
    with pytest.warns(CacheCorruptionWarning) as record:
        again = cache.get_or_compute("enc", {"n": 1}, compute)
    assert record[0].filename == __file__  # the warning points at the caller, not the cache
    assert len(calls) == 2
    np.testing.assert_array_equal(again["x"], np.arange(10))


# ------------------------------------------------------------------------------------------
# Concurrency: two processes, one key
# ------------------------------------------------------------------------------------------

_CONCURRENT_WORKER = r"""
root, marker, ready = sys.argv[2:5]
calls = []
def compute():
    calls.append(1)
    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(0.3)  # give the other process time to pile up on the lock
    return {"x": np.random.default_rng(int.from_bytes(os.urandom(4), "little")).standard_normal((200, 50))}
open(ready, "w").close()
e = cm.Cache(root).get_or_compute("enc", {"subject": "01"}, compute, version=3)
print(json.dumps({"computed": bool(calls), "digest": cm.fingerprint(e["x"])}))
"""


def test_two_processes_compute_one_key_once(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    key = cache.key("enc", {"subject": "01"}, version=3)
    lock_path = cache.lock_path("enc", key)
    lock_path.parent.mkdir(parents=True)
    marker = tmp_path / "marker"
    # Hold the key's lock so both workers are certainly contending for it when it is released.
    gate = FileLock(str(lock_path))
    gate.acquire()
    procs = []
    try:
        for i in range(2):
            procs.append(_spawn(_CONCURRENT_WORKER, cache.root, marker, tmp_path / f"ready{i}"))
        for i, p in enumerate(procs):
            _wait_for(tmp_path / f"ready{i}", p)
        time.sleep(0.3)  # let them reach the lock (ordering aid only: the result holds either way)
        assert _count_lines(marker) == 0
    finally:
        gate.release()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=GUARD_S)
        assert p.returncode == 0, err
        results.append(json.loads(out))

    assert _count_lines(marker) == 1  # computed once
    assert sorted(r["computed"] for r in results) == [False, True]
    assert results[0]["digest"] == results[1]["digest"]  # compute draws random data: same entry read
    entry = cache.get("enc", key)
    assert fingerprint(entry["x"]) == results[0]["digest"]
    assert not _leftovers(cache.root, ".tmp-")


# ------------------------------------------------------------------------------------------
# Listing, disk usage, removal, CLI
# ------------------------------------------------------------------------------------------


def _populate(cache: Cache) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {"encoding": [], "mapping": []}
    for stage, n in (("encoding", 3), ("mapping", 2)):
        for i in range(n):
            e = cache.put(stage, cache.key(stage, {"i": i}), {"x": np.zeros(1000 * (i + 1), np.float32)},
                          {"description": f"{stage} #{i}"} if i == 0 else None)
            keys[stage].append(e.key)
    return keys


def test_entries_and_disk_usage(cache: Cache) -> None:
    keys = _populate(cache)
    cache.root.joinpath("README.md").write_text("hello")
    infos = cache.entries()
    assert [(i.stage, i.key) for i in infos] == [(s, k) for s in ("encoding", "mapping") for k in keys[s]]
    first = infos[0]
    assert first.description == "encoding #0"
    assert infos[1].description == "x float32[2000]"
    assert first.size == sum(p.stat().st_size for p in first.path.iterdir())
    assert first.created.tzinfo is not None
    assert [i.key for i in cache.entries(stage="mapping")] == keys["mapping"]

    du = cache.disk_usage()
    assert set(du) == {"encoding", "mapping", "total"}
    for stage in ("encoding", "mapping"):
        assert du[stage] == sum(i.size for i in cache.entries(stage=stage))
    assert du["total"] == du["encoding"] + du["mapping"] + len("hello")
    table = format_du(du)
    assert "encoding" in table and "total" in table and format_size(du["total"]) in table
    listing = format_entries(infos)
    assert keys["encoding"][0][:16] in listing and "5 entries" in listing


def test_remove_selectors(cache: Cache) -> None:
    keys = _populate(cache)
    assert cache.remove(key_prefix=keys["encoding"][1][:10]) == 1
    assert cache.get("encoding", keys["encoding"][1]) is None
    assert cache.remove(stage="mapping", older_than=3600) == 0  # all recent
    assert cache.remove(stage="mapping") == 2
    assert [i.key for i in cache.entries()] == [keys["encoding"][0], keys["encoding"][2]]
    assert cache.remove(older_than=dt.timedelta(0)) == 2
    assert cache.entries() == [] and not _leftovers(cache.root, ".trash-")
    with pytest.raises(ValueError, match="hexadecimal"):
        cache.remove(key_prefix="zz")


def _cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="alignment")
    parser.add_argument("--cache", default=None)
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    rc = args.func(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_ls_du_rm(cache: Cache, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    keys = _populate(cache)
    root = str(cache.root)

    rc, out, _ = _cli(["--cache", root, "cache", "ls"], capsys)
    assert rc == 0 and "encoding #0" in out and keys["mapping"][1][:16] in out and "5 entries" in out
    rc, out, _ = _cli(["cache", "--cache", root, "ls", "--stage", "mapping", "-l"], capsys)
    assert rc == 0 and keys["mapping"][0] in out and "encoding" not in out
    rc, out, _ = _cli(["cache", "du", "--cache", root], capsys)
    assert rc == 0 and "total" in out and "kB" in out

    rc, _, err = _cli(["--cache", root, "cache", "rm"], capsys)
    assert rc == 2 and "refusing" in err and len(cache.entries()) == 5
    rc, out, _ = _cli(["--cache", root, "cache", "rm", "--key", keys["encoding"][0][:8], "--dry-run"], capsys)
    assert rc == 0 and "would remove 1 entry" in out and len(cache.entries()) == 5
    rc, out, _ = _cli(["--cache", root, "cache", "rm", "--key", keys["encoding"][0][:8]], capsys)
    assert rc == 0 and "removed 1 entry" in out and len(cache.entries()) == 4
    rc, out, _ = _cli(["--cache", root, "cache", "rm", "--stage", "mapping"], capsys)
    assert rc == 0 and "removed 2 entries" in out
    rc, _, err = _cli(["--cache", root, "cache", "rm", "--key", "not-hex"], capsys)
    assert rc == 2 and "hexadecimal" in err
    rc, _, err = _cli(["--cache", root, "cache", "rm", "--stage", "../x"], capsys)
    assert rc == 2 and "invalid stage" in err

    (cache.root / "encoding" / ".corrupt-old").mkdir()
    rc, out, _ = _cli(["--cache", root, "cache", "rm", "--stale"], capsys)
    assert rc == 0 and "1 stale" in out and len(cache.entries()) == 2  # entries kept
    rc, out, _ = _cli(["--cache", root, "cache", "rm", "--all"], capsys)
    assert rc == 0 and "removed 2 entries" in out and cache.entries() == []

    empty = tmp_path / "nowhere"
    rc, out, _ = _cli(["--cache", str(empty), "cache", "ls"], capsys)
    assert rc == 0 and "no cache entries" in out and not empty.exists()


def test_cli_uses_env_root_when_no_option(cache: Cache, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    _populate(cache)
    monkeypatch.setenv("ALIGNMENT_CACHE", str(cache.root))
    rc, out, _ = _cli(["cache", "ls"], capsys)
    assert rc == 0 and "5 entries" in out


def test_format_helpers() -> None:
    assert format_size(0) == "0 B"
    assert format_size(999) == "999 B"
    assert format_size(1234) == "1.2 kB"
    assert format_size(1_234_567) == "1.2 MB"
    assert format_size(345_000_000_000) == "345 GB"
    assert parse_duration("90") == 90 and parse_duration("30m") == 1800 and parse_duration("7d") == 7 * 86400
    with pytest.raises(ValueError):
        parse_duration("soon")
    assert format_entries([]) == "(no cache entries)"
