"""Content-addressed result cache: numpy arrays plus JSON metadata, keyed by a hash.

Every compute unit of the pipeline is a pure function of (inputs, parameters, code version of
its stage). Its result is stored under a key derived from exactly those things, so a result is
either absent or right, never stale::

    cache = Cache()                          # $ALIGNMENT_CACHE, else ./cache
    entry = cache.get_or_compute(
        "encoding",
        {"bold": file_digest(bold_path), "model": "clip:ViT-B-32@openai", "layer": 6},
        lambda: {"r": r, "alpha": alpha},    # only runs on a miss
        version=2,                           # bump when the stage's code changes its results
    )
    r = entry["r"]                           # loaded lazily, read-only

On-disk layout (browsable by hand)::

    <root>/<stage>/<key[:2]>/<key>/arrays.npz   one .npy member per array, no pickles
    <root>/<stage>/<key[:2]>/<key>/meta.json    user meta + stage, version, params, created,
                                                array sizes, sha256 of arrays.npz and of the meta
    <root>/<stage>/<key[:2]>/<key>.lock         present only while a process computes the key
    <root>/<stage>/.tmp-*                       a write in progress (or killed): never served
    <root>/<stage>/.corrupt-*                   entries that failed verification, kept for a look

Guarantees:

- **Atomic writes**: an entry is written into a ``.tmp-*`` folder of its stage folder, fsynced,
  then renamed into place in one step; readers see a complete entry or none.
- **Verified reads**: :meth:`Cache.get` checks the sha256 of ``arrays.npz`` and of the metadata,
  and that the archive opens without pickles. A damaged entry is reported
  (:class:`CacheCorruptionWarning`), moved aside and treated as a miss, so it is recomputed.
- **One computation per key**: :meth:`Cache.get_or_compute` holds a per-key file lock while it
  computes; a second process asking for the same key waits, then reads the result.
- **Interrupted runs resume**: finished units are hits; a killed writer leaves only a ``.tmp-*``
  folder, cleaned up by later writes or ``python -m alignment cache rm --stale``.

The module depends on numpy, filelock and the standard library only.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import struct
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

__all__ = [
    "Cache",
    "CacheCorruptionWarning",
    "Entry",
    "EntryInfo",
    "LazyArrays",
    "cache_key",
    "file_digest",
    "fingerprint",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the cache root.
ENV_VAR = "ALIGNMENT_CACHE"
#: Storage format written in ``meta.json``; bump on incompatible layout changes.
FORMAT = 1
#: A ``.tmp-*`` folder untouched for this long is considered abandoned (seconds).
STALE_SECONDS = 15 * 60

ARRAYS_FILE = "arrays.npz"
META_FILE = "meta.json"
TMP_PREFIX = ".tmp-"
CORRUPT_PREFIX = ".corrupt-"
TRASH_PREFIX = ".trash-"

_STAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
_KEY_RE = re.compile(r"^[0-9a-f]{16,128}$")
_HEX_RE = re.compile(r"^[0-9a-f]+$")
_TMP_RE = re.compile(r"^\.tmp-(\d+)-[0-9a-f]+-(.+)$")
# Keys put() fills in itself; user meta may not override them. ("version", "params" and
# "description" are user-settable: get_or_compute fills the first two.)
_RESERVED_META = frozenset(
    {"format", "stage", "key", "created", "created_unix", "host", "pid", "arrays", "nbytes",
     "integrity"}
)

#: Test hook: called as ``_write_hook(point, tmp_dir)`` at ``"arrays-written"`` (arrays.npz
#: closed, meta.json not yet written) and ``"before-rename"`` (entry complete in its temp folder).
#: Tests replace it to pause or kill a writer at those points; ``None`` in normal use.
_write_hook: Callable[[str, Path], None] | None = None


class CacheCorruptionWarning(UserWarning):
    """A stored cache entry failed verification; it was moved aside and will be recomputed."""


class _Corrupt(Exception):
    """Internal: the reason why an entry failed verification."""


# --------------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------------

_FP_DOMAIN = b"alignment.fingerprint/1\n"  # part of every hash: changing the encoding changes keys


def fingerprint(obj: Any) -> str:
    """Deterministic sha256 of a parameter structure.

    The encoding is canonical and type-tagged, so the result is the same in every process and on
    every run (no use of Python's salted ``hash()``), insensitive to dict insertion order, and
    sensitive to every value, dtype and shape.

    Parameters
    ----------
    obj : object
        Any nesting of: ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``; numpy
        scalars (encoded as the equal Python scalar, so ``np.int64(3)`` and ``3`` agree);
        ``numpy.ndarray`` (dtype, shape and bytes; byte order normalised to little-endian;
        object arrays are refused); ``bytes``/``bytearray``/``memoryview``; ``pathlib`` paths
        (by their string, *not* their content: use :func:`file_digest` for content); ``dict``
        (keys sorted by their encoding); ``list`` and ``tuple`` (the same encoding, so params that
        went through JSON keep their key); ``set``/``frozenset`` (order-free); dataclass
        instances (class name and fields).

    Returns
    -------
    str
        64 hex characters.

    Raises
    ------
    TypeError
        For unsupported types (arbitrary objects, object arrays).
    ValueError
        For self-referencing containers.

    Notes
    -----
    ``1``, ``1.0`` and ``True`` are different parameters and give different fingerprints.
    """
    h = hashlib.sha256(_FP_DOMAIN)
    _fp_encode(obj, h.update, set())
    return h.hexdigest()


def _fp_len(write: Callable[[bytes], Any], n: int) -> None:
    write(struct.pack(">Q", n))


def _fp_bytes(obj: Any) -> bytes:
    """Encoding of ``obj`` as one bytes object (used where items must be sorted)."""
    parts: list[bytes] = []
    _fp_encode(obj, parts.append, set())
    return b"".join(parts)


def _fp_encode(obj: Any, write: Callable[[Any], Any], seen: set[int]) -> None:
    # Order of the checks matters: bool before int (bool subclasses int), np.str_/np.bytes_ are
    # str/bytes subclasses and are handled as such.
    if obj is None:
        write(b"N")
    elif isinstance(obj, (bool, np.bool_)):
        write(b"T" if obj else b"F")
    elif isinstance(obj, (int, np.integer)):
        s = str(int(obj)).encode()
        write(b"i")
        _fp_len(write, len(s))
        write(s)
    elif isinstance(obj, (float, np.floating)):
        f = float(obj)
        # All NaNs are one parameter value whatever their payload bits.
        write(b"f" + (b"nan" if f != f else struct.pack(">d", f)))
    elif isinstance(obj, (complex, np.complexfloating)):
        c = complex(obj)
        write(b"c" + struct.pack(">dd", c.real, c.imag))
    elif isinstance(obj, str):
        s = obj.encode("utf-8", "surrogatepass")
        write(b"s")
        _fp_len(write, len(s))
        write(s)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        b = obj.tobytes() if isinstance(obj, memoryview) else bytes(obj)
        write(b"b")
        _fp_len(write, len(b))
        write(b)
    elif isinstance(obj, PurePath):
        s = obj.as_posix().encode("utf-8", "surrogateescape")
        write(b"p")
        _fp_len(write, len(s))
        write(s)
    elif isinstance(obj, (np.ndarray, np.generic)):
        _fp_array(np.asarray(obj), write)
    elif isinstance(obj, Mapping):
        with _fp_guard(obj, seen):
            items = sorted((_fp_bytes(k), v) for k, v in obj.items())
            write(b"d")
            _fp_len(write, len(items))
            for kb, v in items:
                write(kb)
                _fp_encode(v, write, seen)
    elif isinstance(obj, (list, tuple)):
        with _fp_guard(obj, seen):
            write(b"l")
            _fp_len(write, len(obj))
            for v in obj:
                _fp_encode(v, write, seen)
    elif isinstance(obj, (set, frozenset)):
        with _fp_guard(obj, seen):
            encoded = sorted(_fp_bytes(v) for v in obj)
            write(b"S")
            _fp_len(write, len(encoded))
            for b in encoded:
                write(b)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        with _fp_guard(obj, seen):
            write(b"D")
            _fp_encode(f"{type(obj).__module__}.{type(obj).__qualname__}", write, seen)
            fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
            _fp_encode(fields, write, seen)
    else:
        raise TypeError(
            f"fingerprint: unsupported type {type(obj).__module__}.{type(obj).__qualname__}; "
            "use JSON-able values, numpy arrays, bytes or paths (file_digest(path) hashes a "
            "file's content)"
        )


class _fp_guard:
    """Context manager refusing self-referencing containers (they would recurse forever)."""

    def __init__(self, obj: Any, seen: set[int]) -> None:
        self.oid, self.seen = id(obj), seen

    def __enter__(self) -> None:
        if self.oid in self.seen:
            raise ValueError("fingerprint: self-referencing container")
        self.seen.add(self.oid)

    def __exit__(self, *exc: object) -> None:
        self.seen.discard(self.oid)


def _fp_array(arr: np.ndarray, write: Callable[[Any], Any]) -> None:
    if arr.dtype.hasobject:
        raise TypeError("fingerprint: object arrays are not supported (their bytes are pointers)")
    # Same values from a big-endian file and from memory must give the same key.
    if arr.dtype.fields is None:
        little = arr.dtype.newbyteorder("<")
        if little != arr.dtype:
            arr = arr.astype(little)
    descr = repr(np.lib.format.dtype_to_descr(arr.dtype)).encode()
    write(b"a")
    _fp_len(write, len(descr))
    write(descr)
    _fp_len(write, arr.ndim)
    for dim in arr.shape:
        _fp_len(write, dim)
    # A uint8 view hashes any dtype (datetime64 refuses the buffer protocol) without a bytes copy.
    data = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    _fp_len(write, data.size)
    write(data)


def file_digest(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20) -> str:
    """sha256 of a file's content, for use in cache params (``{"bold": file_digest(p)}``).

    Parameters
    ----------
    path : str or path-like
        File to hash.
    chunk_size : int
        Bytes read at a time (memory stays bounded for multi-GB files).

    Returns
    -------
    str
        64 hex characters; equal for equal content wherever the file lives.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def cache_key(stage: str, params: Any, version: Any = 1) -> str:
    """Key of a result: the fingerprint of the stage name, the stage version and the params.

    Parameters
    ----------
    stage : str
        Stage name (letters, digits, ``_ . + -``).
    params : object
        Everything else the result depends on (see :func:`fingerprint`); put content digests of
        input files here (:func:`file_digest`).
    version : int or str
        Code version of the stage; bump it when the stage's code changes its results.

    Returns
    -------
    str
        64 hex characters.
    """
    _check_stage(stage)
    return fingerprint(("alignment.cache.key", stage, version, params))


# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------


def _jsonable(obj: Any) -> Any:
    """A JSON-serialisable rendering of params/meta for ``meta.json`` (for people, not keys)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.bool_, np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, (complex, np.complexfloating)):
        return {"__complex__": [complex(obj).real, complex(obj).imag]}
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        b = obj.tobytes() if isinstance(obj, memoryview) else bytes(obj)
        return {"__bytes__": {"len": len(b), "sha256": hashlib.sha256(b).hexdigest()}}
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
        desc: dict[str, Any] = {"dtype": str(arr.dtype), "shape": list(arr.shape)}
        if not arr.dtype.hasobject:
            desc["fingerprint"] = fingerprint(arr)
            if arr.size <= 32:  # small arrays are worth reading in the meta
                desc["values"] = _jsonable(arr.tolist())
        return {"__ndarray__": desc}
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_jsonable(v) for v in obj), key=_canonical_json)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    raise TypeError(f"cache meta: cannot store a {type(obj).__qualname__} in meta.json")


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _meta_digest(meta: Mapping[str, Any]) -> str:
    """sha256 of the metadata without its ``integrity`` block (canonical JSON)."""
    body = {k: v for k, v in meta.items() if k != "integrity"}
    return hashlib.sha256(_canonical_json(body).encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------------------------


class LazyArrays(Mapping):
    """Read-only mapping name → array, read from ``arrays.npz`` on first access.

    Arrays are loaded with ``allow_pickle=False``, kept once loaded, and returned read-only (they
    are shared by every access through this entry; ``arr.copy()`` to modify).
    """

    def __init__(self, path: Path, names: list[str]) -> None:
        self._path = Path(path)
        self._names = list(names)
        self._loaded: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._names:
            raise KeyError(f"no array {name!r} in cache entry (has {', '.join(self._names) or 'none'})")
        # Opened per access: no file handle outlives the call, so many entries cost no fds.
        try:
            with np.load(self._path, allow_pickle=False) as z:
                arr = z[name]
        except FileNotFoundError:
            raise FileNotFoundError(
                f"cache entry {self._path.parent} was removed after it was read (cache rm?); "
                "get it again to recompute"
            ) from None
        arr.flags.writeable = False
        self._loaded[name] = arr
        return arr

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __repr__(self) -> str:
        return f"LazyArrays({self._names!r}, loaded={sorted(self._loaded)!r})"


class Entry:
    """A verified cache entry.

    Attributes
    ----------
    key : str
        The entry's key (64 hex characters).
    stage : str
        Stage name.
    path : pathlib.Path
        The entry folder ``<root>/<stage>/<key[:2]>/<key>``.
    meta : dict
        Content of ``meta.json``: user meta plus ``stage``, ``key``, ``version``, ``params``,
        ``created`` (ISO 8601, UTC), ``arrays`` (name → dtype, shape, nbytes), ``nbytes`` and
        ``integrity``.
    arrays : LazyArrays
        Mapping name → array (lazy, read-only); ``entry["name"]`` is a shortcut.

    Notes
    -----
    Arrays are read on first access; if the entry is removed (``cache rm``) before that, the
    access raises ``FileNotFoundError``: ask the cache again.
    """

    def __init__(self, stage: str, key: str, path: Path, meta: dict[str, Any]) -> None:
        self.stage = stage
        self.key = key
        self.path = Path(path)
        self.meta = meta
        self.arrays = LazyArrays(self.path / ARRAYS_FILE, list(meta.get("arrays", {})))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __contains__(self, name: object) -> bool:
        return name in self.arrays

    def keys(self) -> list[str]:
        """Array names, in the order they were stored."""
        return list(self.arrays)

    def load(self) -> dict[str, np.ndarray]:
        """All arrays, as a dict (read-only arrays)."""
        return {name: self.arrays[name] for name in self.arrays}

    @property
    def nbytes(self) -> int:
        """Total in-memory size of the arrays, in bytes (like ``ndarray.nbytes``)."""
        return int(self.meta.get("nbytes", 0))

    @property
    def size(self) -> int:
        """Size of the entry on disk, in bytes."""
        return _tree_size(self.path)

    @property
    def params(self) -> Any:
        """The params recorded at write time (JSON rendering; arrays summarised)."""
        return self.meta.get("params")

    @property
    def version(self) -> Any:
        """The stage version recorded at write time."""
        return self.meta.get("version")

    @property
    def created(self) -> _dt.datetime:
        """Creation time (UTC)."""
        return _dt.datetime.fromtimestamp(float(self.meta.get("created_unix", 0.0)), _dt.timezone.utc)

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{n}: {d.get('dtype')}{tuple(d.get('shape', ()))}" for n, d in self.meta.get("arrays", {}).items()
        )
        return f"Entry({self.stage}/{self.key[:12]}…, {{{shapes}}})"


@dataclasses.dataclass(frozen=True)
class EntryInfo:
    """A line of ``cache ls``: what is stored, without verifying or loading it.

    Attributes
    ----------
    stage, key : str
    size : int
        Bytes on disk.
    created : datetime.datetime
        Creation time (UTC).
    description : str
        ``meta["description"]`` when set, else a summary of the arrays.
    path : pathlib.Path
    meta : dict or None
        The parsed ``meta.json`` (None when unreadable), unverified.
    """

    stage: str
    key: str
    size: int
    created: _dt.datetime
    description: str
    path: Path
    meta: dict | None = dataclasses.field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------


class Cache:
    """Content-addressed store of results (numpy arrays + JSON metadata).

    Parameters
    ----------
    root : str or path-like, optional
        Cache folder. Default: ``$ALIGNMENT_CACHE`` if set, else ``./cache`` (resolved against the
        current directory once, at construction). Nothing is created until the first write.

    Notes
    -----
    Safe for concurrent use by several processes (and threads) on one machine or on a shared
    filesystem with working ``flock``: writes are atomic renames, reads are verified, and a
    per-key lock keeps two processes from computing one key twice. Locks are kernel locks, so a
    killed process never leaves a key locked.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            root = os.environ.get(ENV_VAR) or "cache"
        self.root = Path(root).expanduser().absolute()

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------------

    def entry_path(self, stage: str, key: str) -> Path:
        """Folder of an entry: ``<root>/<stage>/<key[:2]>/<key>`` (whether or not it exists)."""
        _check_stage(stage)
        _check_key(key)
        return self.root / stage / key[:2] / key

    def lock_path(self, stage: str, key: str) -> Path:
        """Per-key lock file ``<root>/<stage>/<key[:2]>/<key>.lock``."""
        return self.entry_path(stage, key).with_name(key + ".lock")

    # -- keys ----------------------------------------------------------------------------

    def key(self, stage: str, params: Any, version: Any = 1) -> str:
        """Key of a result; see :func:`cache_key`."""
        return cache_key(stage, params, version)

    # -- reading -------------------------------------------------------------------------

    def get(self, stage: str, key: str) -> Entry | None:
        """Return the verified entry, or None when absent or damaged.

        Parameters
        ----------
        stage : str
        key : str

        Returns
        -------
        Entry or None
            None also when the entry failed verification (sha256 of ``arrays.npz`` or of the
            metadata, unreadable ``meta.json``, archive that does not open without pickles):
            then a :class:`CacheCorruptionWarning` is issued and the entry is moved aside to
            ``<root>/<stage>/.corrupt-*``, so the caller recomputes it.
        """
        return self._lookup(stage, key, have_lock=False)

    def peek(self, stage: str, key: str) -> Entry | None:
        """The entry if its metadata is there, without verifying anything (cheap existence checks;
        read arrays through :meth:`get`)."""
        path = self.entry_path(stage, key)
        try:
            meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return Entry(stage, key, path, meta) if isinstance(meta, dict) else None

    def __contains__(self, item: tuple[str, str]) -> bool:
        """``(stage, key) in cache``: whether a verified entry exists."""
        stage, key = item
        return self.get(stage, key) is not None

    def _lookup(self, stage: str, key: str, *, have_lock: bool) -> Entry | None:
        path = self.entry_path(stage, key)
        if not path.is_dir():
            return None
        try:
            meta = _verify(path, stage, key)
        except _Corrupt as exc:
            if not path.exists():  # removed by `cache rm` while we read it: a plain miss
                return None
            return self._handle_corrupt(stage, key, path, str(exc), have_lock=have_lock)
        return Entry(stage, key, path, meta)

    def _handle_corrupt(self, stage: str, key: str, path: Path, reason: str, *, have_lock: bool) -> Entry | None:
        if not have_lock:
            # Quarantine under the key lock: without it we could move aside a fresh, valid entry
            # that a recomputing process renamed into place after our failed check.
            with self._key_lock(stage, key, blocking=False) as acquired:
                if not acquired:
                    _warn_corrupt(stage, key, reason, None)  # the lock holder is recomputing it
                    return None
                return self._lookup(stage, key, have_lock=True)
        moved = self._quarantine(stage, path)
        _warn_corrupt(stage, key, reason, moved)
        return None

    def _quarantine(self, stage: str, path: Path) -> Path | None:
        dest = path.parent.parent / f"{CORRUPT_PREFIX}{path.name}-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        try:
            os.rename(path, dest)
            return dest
        except FileNotFoundError:
            return None
        except OSError:
            shutil.rmtree(path, ignore_errors=True)  # cannot move (odd filesystem): delete instead
            return None

    # -- writing -------------------------------------------------------------------------

    def put(
        self,
        stage: str,
        key: str,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, Any] | None = None,
    ) -> Entry:
        """Store a result atomically and return it as an :class:`Entry`.

        Parameters
        ----------
        stage : str
            Stage name.
        key : str
            Entry key, normally from :meth:`key`.
        arrays : mapping of str to numpy.ndarray
            Arrays to store (any shapes; may be empty). Object dtypes are refused: they would
            need pickle.
        meta : mapping, optional
            JSON-able user metadata (numpy scalars, arrays and paths are rendered). ``version``,
            ``params`` and ``description`` are recognised (``description`` is shown by
            ``cache ls``); the keys the cache writes itself (``stage``, ``key``, ``created``,
            ``arrays``, ``nbytes``, ``integrity``, ...) are refused.

        Returns
        -------
        Entry
            The stored entry. If a valid entry for the key appeared meanwhile (another process
            wrote the same result), that one is returned and this write is discarded.

        Raises
        ------
        ValueError
            Object arrays, bad array names, bad stage or key, reserved meta keys.
        """
        return self._put(stage, key, arrays, meta)

    def _put(self, stage: str, key: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None) -> Entry:
        final = self.entry_path(stage, key)
        arrs = _check_arrays(arrays)
        user_meta = _check_meta(meta)
        stage_dir = self.root / stage
        stage_dir.mkdir(parents=True, exist_ok=True)
        self._clean_tmp(stage_dir, STALE_SECONDS)  # opportunistic: leftovers of killed writers

        tmp = _make_tmp_dir(stage_dir)
        try:
            npz = tmp / ARRAYS_FILE
            _write_npz(npz, arrs)
            _call_hook("arrays-written", tmp)
            now = time.time()
            # Insertion order is the order people read meta.json in (and keeps array order).
            full_meta: dict[str, Any] = {
                "format": FORMAT,
                "stage": stage,
                "key": key,
                "version": user_meta.pop("version", None),
                "params": user_meta.pop("params", None),
                "created": _dt.datetime.fromtimestamp(now, _dt.timezone.utc).isoformat(timespec="seconds"),
                "created_unix": now,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                **user_meta,
                "arrays": {
                    n: {"dtype": str(a.dtype), "shape": list(a.shape), "nbytes": int(a.nbytes)} for n, a in arrs.items()
                },
                "nbytes": int(sum(a.nbytes for a in arrs.values())),
            }
            full_meta["integrity"] = {
                "arrays_sha256": _sha256_file(npz),
                "arrays_bytes": npz.stat().st_size,
                "meta_sha256": _meta_digest(full_meta),
            }
            with open(tmp / META_FILE, "w", encoding="utf-8") as f:
                json.dump(full_meta, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(tmp)
            _call_hook("before-rename", tmp)

            final.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(5):
                if final.exists():
                    # have_lock=True even for a bare put(): the entry there was just seen damaged
                    # and ours is complete, so moving it aside cannot lose a good result.
                    existing = self._lookup(stage, key, have_lock=True)
                    if existing is not None:  # another writer won: same key, same result
                        shutil.rmtree(tmp, ignore_errors=True)
                        return existing
                    # _lookup moved the damaged one aside; try again
                try:
                    os.rename(tmp, final)
                except FileNotFoundError:
                    if not tmp.exists():
                        raise
                    final.parent.mkdir(parents=True, exist_ok=True)  # shard folder deleted meanwhile
                    continue
                except OSError as exc:
                    if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) or isinstance(exc, FileExistsError):
                        continue  # lost a race with another writer: re-check it
                    raise
                _fsync_dir(final.parent)
                logger.debug("cache: stored %s/%s", stage, key)
                return Entry(stage, key, final, full_meta)
            raise RuntimeError(f"cache: could not store {stage}/{key} at {final}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def get_or_compute(
        self,
        stage: str,
        params: Any,
        compute: Callable[[], Any],
        version: Any = 1,
        meta: Mapping[str, Any] | None = None,
    ) -> Entry:
        """Return the cached result for (stage, params, version), computing it on a miss.

        Parameters
        ----------
        stage : str
            Stage name.
        params : object
            Everything the result depends on (see :func:`fingerprint`); recorded in the meta.
        compute : callable
            ``compute()`` returns ``dict[str, ndarray]``, or ``(arrays, extra_meta)``. Called at
            most once per key across processes sharing the cache (others wait and read).
        version : int or str
            Code version of the stage.
        meta : mapping, optional
            User metadata stored with a freshly computed result.

        Returns
        -------
        Entry
            Read from disk (lazily), whether it was a hit or just computed.
        """
        key = self.key(stage, params, version)
        entry = self.get(stage, key)
        if entry is not None:
            return entry
        with self._key_lock(stage, key, blocking=True):
            entry = self._lookup(stage, key, have_lock=True)  # computed while we waited?
            if entry is not None:
                return entry
            logger.debug("cache: computing %s/%s", stage, key)
            arrays, extra = _split_compute_result(compute())
            full = {**dict(meta or {}), **extra, "params": _jsonable(params), "version": _jsonable(version)}
            return self._put(stage, key, arrays, full)

    class _KeyLock:
        def __init__(self, lock_path: Path, blocking: bool) -> None:
            self.path, self.blocking = lock_path, blocking
            self.lock = FileLock(str(lock_path))
            self.acquired = False

        def __enter__(self) -> bool:
            for attempt in range(5):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    if self.blocking:
                        self.lock.acquire()
                        self.acquired = True
                    else:
                        self.lock.acquire(blocking=False)
                        self.acquired = True
                except FileNotFoundError:
                    # The folder was deleted under us (a manual `rm -rf` of the stage): recreate.
                    if attempt == 4:
                        raise
                    continue
                except Timeout:  # non-blocking and held by someone else
                    self.acquired = False
                break
            return self.acquired

        def __exit__(self, *exc: object) -> None:
            if self.acquired:
                # Unlink while still holding the lock so no .lock files pile up. A waiter that
                # opened the old file gets it after release, sees it unlinked (filelock checks
                # st_nlink) and retries on a fresh file; with an older filelock the worst case is
                # a duplicate computation, which put() resolves (same key, same result).
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
                self.lock.release()

    def _key_lock(self, stage: str, key: str, *, blocking: bool) -> Cache._KeyLock:
        return Cache._KeyLock(self.lock_path(stage, key), blocking)

    # -- listing and maintenance -----------------------------------------------------------

    def stages(self) -> list[str]:
        """Names of the stage folders present under the root, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _STAGE_RE.match(p.name) and p.name != "total")

    def entries(
        self,
        stage: str | None = None,
        key_prefix: str | None = None,
        older_than: float | _dt.timedelta | None = None,
    ) -> list[EntryInfo]:
        """List stored entries (without verifying their arrays).

        Parameters
        ----------
        stage : str, optional
            Only this stage.
        key_prefix : str, optional
            Only keys starting with this (hex) prefix.
        older_than : float or datetime.timedelta, optional
            Only entries created more than this long ago (seconds if a number).

        Returns
        -------
        list of EntryInfo
            Sorted by stage, then creation time. Entries whose ``meta.json`` is unreadable are
            listed with a description saying so (``get`` will discard them).
        """
        if stage is not None:
            _check_stage(stage)
        if key_prefix is not None:
            key_prefix = key_prefix.lower()
            if not _HEX_RE.match(key_prefix):
                raise ValueError(f"key prefix must be hexadecimal, got {key_prefix!r}")
        cutoff = None if older_than is None else time.time() - _seconds(older_than)
        out: list[EntryInfo] = []
        for st in [stage] if stage is not None else self.stages():
            stage_dir = self.root / st
            if not stage_dir.is_dir():
                continue
            for shard in sorted(stage_dir.iterdir()):
                if shard.name.startswith(".") or not shard.is_dir():
                    continue
                for path in sorted(shard.iterdir()):
                    if not path.is_dir() or not _KEY_RE.match(path.name):
                        continue
                    if key_prefix is not None and not path.name.startswith(key_prefix):
                        continue
                    try:
                        info = _entry_info(st, path)
                    except FileNotFoundError:
                        continue  # removed while we listed
                    if cutoff is not None and info.created.timestamp() >= cutoff:
                        continue
                    out.append(info)
        out.sort(key=lambda e: (e.stage, e.created, e.key))
        return out

    def disk_usage(self) -> dict[str, int]:
        """Bytes on disk per stage folder (leftovers included), plus ``"total"``.

        Returns
        -------
        dict
            ``{stage: bytes, ..., "total": bytes}``; ``"total"`` also counts files at the root.
        """
        usage: dict[str, int] = {}
        if not self.root.is_dir():
            return {"total": 0}
        for st in self.stages():
            usage[st] = _tree_size(self.root / st)
        usage["total"] = _tree_size(self.root)
        return usage

    def remove(
        self,
        stage: str | None = None,
        key_prefix: str | None = None,
        older_than: float | _dt.timedelta | None = None,
    ) -> int:
        """Delete entries matching all given selectors (all entries if none is given).

        Parameters
        ----------
        stage : str, optional
        key_prefix : str, optional
        older_than : float or datetime.timedelta, optional
            See :meth:`entries`.

        Returns
        -------
        int
            Number of entries removed.

        Notes
        -----
        Each entry is first renamed out of place (atomic), then deleted, so concurrent readers
        see it either whole or absent, never half-deleted.
        """
        n = 0
        for info in self.entries(stage, key_prefix, older_than):
            trash = info.path.parent.parent / f"{TRASH_PREFIX}{info.key}-{secrets.token_hex(4)}"
            try:
                os.rename(info.path, trash)
            except FileNotFoundError:
                continue  # removed by someone else meanwhile
            shutil.rmtree(trash, ignore_errors=True)
            n += 1
            # Shard folders stay even when empty: removing one races with a writer about to
            # create its lock file or rename its entry into it.
        return n

    def remove_stale(self, stage: str | None = None, older_than: float | _dt.timedelta = STALE_SECONDS) -> int:
        """Delete leftovers: abandoned ``.tmp-*`` writes, ``.corrupt-*`` and ``.trash-*`` folders.

        Parameters
        ----------
        stage : str, optional
            Only this stage.
        older_than : float or datetime.timedelta
            A ``.tmp-*`` folder is abandoned when its writer process is gone (same host) or when
            nothing in it changed for this long (seconds if a number).

        Returns
        -------
        int
            Number of folders removed.
        """
        if stage is not None:
            _check_stage(stage)
        n = 0
        for st in [stage] if stage is not None else self.stages():
            stage_dir = self.root / st
            if not stage_dir.is_dir():
                continue
            n += self._clean_tmp(stage_dir, _seconds(older_than))
            for p in stage_dir.iterdir():
                if p.name.startswith((CORRUPT_PREFIX, TRASH_PREFIX)) and p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                    n += 1
        return n

    @staticmethod
    def _clean_tmp(stage_dir: Path, older_than: float) -> int:
        n = 0
        try:
            children = list(stage_dir.iterdir())
        except OSError:
            return 0
        now = time.time()
        for p in children:
            if not p.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                continue
            try:
                if _tmp_is_stale(p, now, older_than):
                    shutil.rmtree(p, ignore_errors=True)
                    n += 1
            except OSError:
                continue
        return n


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------


def _check_stage(stage: str) -> None:
    if not isinstance(stage, str) or not _STAGE_RE.match(stage) or stage == "total":
        raise ValueError(
            f"invalid stage name {stage!r}: use letters, digits and '_.+-' (not starting with "
            "'.' or a symbol; 'total' is reserved)"
        )


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"invalid cache key {key!r}: expected 16-128 lowercase hex characters")


def _check_arrays(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if not isinstance(arrays, Mapping):
        raise TypeError(f"cache arrays must be a dict of name -> numpy array, got {type(arrays).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name or name.startswith(".") or any(c in name for c in "/\\\0"):
            raise ValueError(f"invalid array name {name!r}: non-empty, no '/', '\\' or leading '.'")
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise ValueError(
                f"array {name!r} has dtype {arr.dtype}: object arrays cannot be cached (they need "
                "pickle, which the cache never uses); convert to a numeric or fixed-width string dtype"
            )
        out[name] = arr
    return out


def _check_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise TypeError(f"cache meta must be a dict, got {type(meta).__name__}")
    clash = sorted(set(map(str, meta)) & _RESERVED_META)
    if clash:
        raise ValueError(f"cache meta keys {clash} are reserved (written by the cache itself)")
    return _jsonable(dict(meta))


def _split_compute_result(out: Any) -> tuple[Mapping[str, Any], dict[str, Any]]:
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Mapping):
        return out[0], dict(out[1] or {})
    if isinstance(out, Mapping):
        return out, {}
    raise TypeError(
        f"compute() must return a dict of name -> array, or (arrays, meta); got {type(out).__name__}"
    )


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    # The np.savez file format, written by hand: np.savez would take an array called "file" or
    # "allow_pickle" as its own argument, and this way pickles are refused at write time too.
    with open(path, "wb") as f:
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                with zf.open(name + ".npy", mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _sha256_file(path: Path) -> str:
    return file_digest(path)


def _verify(path: Path, stage: str, key: str) -> dict[str, Any]:
    """Check an entry folder; return its meta or raise _Corrupt with the reason."""
    try:
        text = (path / META_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _Corrupt(f"{META_FILE} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _Corrupt(f"{META_FILE} is unreadable ({exc})") from None
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise _Corrupt(f"{META_FILE} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("integrity"), dict):
        raise _Corrupt(f"{META_FILE} lacks the integrity block")
    integ = meta["integrity"]
    if meta.get("format") != FORMAT:
        raise _Corrupt(f"unsupported storage format {meta.get('format')!r} (this code reads {FORMAT})")
    if meta.get("stage") != stage or meta.get("key") != key:
        raise _Corrupt(f"{META_FILE} names {meta.get('stage')}/{meta.get('key')}, not this entry")
    if _meta_digest(meta) != integ.get("meta_sha256"):
        raise _Corrupt(f"{META_FILE} content does not match its sha256 (edited or damaged)")
    npz = path / ARRAYS_FILE
    try:
        size = npz.stat().st_size
    except FileNotFoundError:
        raise _Corrupt(f"{ARRAYS_FILE} is missing") from None
    if size != integ.get("arrays_bytes"):
        raise _Corrupt(f"{ARRAYS_FILE} has {size} bytes, expected {integ.get('arrays_bytes')} (truncated?)")
    try:
        digest = _sha256_file(npz)
    except OSError as exc:
        raise _Corrupt(f"{ARRAYS_FILE} is unreadable ({exc})") from None
    if digest != integ.get("arrays_sha256"):
        raise _Corrupt(f"{ARRAYS_FILE} does not match its sha256 (damaged)")
    names = list(meta.get("arrays") or {})
    if names:  # an empty archive is not recognised by np.load; its sha256 was checked above
        try:
            with np.load(npz, allow_pickle=False) as z:
                members = list(z.files)
        except Exception as exc:  # noqa: BLE001 - any failure to open means unusable
            raise _Corrupt(f"{ARRAYS_FILE} does not open as an npz without pickles ({exc})") from None
        if sorted(members) != sorted(names):
            raise _Corrupt(f"{ARRAYS_FILE} holds {members}, {META_FILE} lists {names}")
    return meta


def _warn_corrupt(stage: str, key: str, reason: str, moved: Path | None) -> None:
    where = f"moved aside to {moved}" if moved is not None else "left in place (another process holds its lock)"
    msg = (
        f"alignment cache: entry {stage}/{key} is corrupt: {reason}; {where}. It will be "
        "recomputed. `python -m alignment cache rm --stale` deletes such leftovers."
    )
    logger.debug(msg)
    warnings.warn(msg, CacheCorruptionWarning, stacklevel=_caller_stacklevel())


def _caller_stacklevel() -> int:
    """Stack level of the first frame outside this module (the user's call to the cache)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame, level = frame.f_back, level + 1
    return level


def _call_hook(point: str, tmp: Path) -> None:
    if _write_hook is not None:
        _write_hook(point, tmp)


def _owner_tag() -> str:
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:64] or "host"
    # Containers may share a hostname; the pid namespace tells their pids apart.
    try:
        ns = re.sub(r"\D", "", os.readlink("/proc/self/ns/pid")) or "0"
    except OSError:
        ns = "0"
    return f"{host}~{ns}"


def _make_tmp_dir(stage_dir: Path) -> Path:
    # Not tempfile.mkdtemp: its 0700 mode would make entries unreadable to lab colleagues
    # sharing the cache once renamed into place.
    for _ in range(100):
        p = stage_dir / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{_owner_tag()}"
        try:
            p.mkdir()
            return p
        except FileExistsError:
            continue
    raise RuntimeError(f"cache: cannot create a temporary folder in {stage_dir}")


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tmp_is_stale(p: Path, now: float, older_than: float) -> bool:
    m = _TMP_RE.match(p.name)
    if m is not None and m.group(2) == _owner_tag() and not _pid_alive(int(m.group(1))):
        return True  # its writer (on this host) is gone
    # Newest change inside: a slow writer keeps touching its files.
    newest = p.stat().st_mtime
    for child in p.iterdir():
        try:
            newest = max(newest, child.stat().st_mtime)
        except OSError:
            pass
    return now - newest > older_than


def _fsync_dir(path: Path) -> None:
    # Make the rename/creation itself durable; not supported everywhere (Windows): best effort.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tree_size(path: Path) -> int:
    total = 0
    try:
        with os.scandir(path) as it:
            for e in it:
                try:
                    if e.is_dir(follow_symlinks=False):
                        total += _tree_size(Path(e.path))
                    else:
                        total += e.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    except OSError:
        pass
    return total


def _entry_info(stage: str, path: Path) -> EntryInfo:
    size = _tree_size(path)
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError
    except (OSError, ValueError):
        mtime = path.stat().st_mtime if path.exists() else 0.0
        return EntryInfo(stage, path.name, size, _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc),
                         f"<unreadable {META_FILE}>", path)
    try:
        created = _dt.datetime.fromtimestamp(float(meta["created_unix"]), _dt.timezone.utc)
    except (KeyError, TypeError, ValueError):
        created = _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc)
    return EntryInfo(stage, path.name, size, created, _describe(meta), path, meta)


def _describe(meta: Mapping[str, Any], width: int = 60) -> str:
    desc = meta.get("description")
    if not isinstance(desc, str) or not desc:
        arrays = meta.get("arrays") or {}
        parts = []
        for name, d in arrays.items():
            shape = "×".join(str(s) for s in d.get("shape", [])) or "scalar"
            parts.append(f"{name} {d.get('dtype', '?')}[{shape}]")
        desc = ", ".join(parts) or "(no arrays)"
    desc = " ".join(desc.split())
    return desc if len(desc) <= width else desc[: width - 1] + "…"


def _seconds(value: float | _dt.timedelta) -> float:
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    return float(value)
