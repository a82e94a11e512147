"""JAX's persistent compilation cache, on by default: a second run of the same program (same config shapes,
same JAX, same machine) loads its compiled executables instead of compiling them again.

The directory is `$JAXDQN_COMPILE_CACHE` if set (`off` turns the cache off), else
`$XDG_CACHE_HOME/jaxdqn/xla` (`~/.cache/jaxdqn/xla`). A directory the user already gave JAX
(`jax_compilation_cache_dir`) is left as it is.

Programs that contain EnvPool's XLA step do not hit the cache across processes: EnvPool embeds its pool's
address in the program, so each process compiles a different one. Programs of the JAX environment backend
(gymnax, user JAX environments) do.

JAX's cache still traces and lowers a program before it can look it up (about a second for the training loop).
`compile_program` skips that for programs whose every input a key can name: it keeps a copy exported with
`jax.export` in the folder `programs` of the cache directory, and a later process with the same key loads it,
with the programs that came after it last time loaded ahead on other threads.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pickle
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

from jaxdqn.importing import defer_imports

CACHE_ENV_VAR = "JAXDQN_COMPILE_CACHE"
OFF = "off"
MIN_COMPILE_SECONDS = 0.1
"""Executables that compiled faster than this are not written (JAX's default is 1 s; jaxdqn's small helper
programs take 0.1-0.5 s each and add up to seconds at start-up, where reading one back takes 0.03-0.06 s)."""

CPU_ONCE_OPTIONS = {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}
"""XLA's options on CPU for programs that run once or a few times a run (a run's start, a pool's reset). Compiling
is most of their cost:
- LLVM's optimisation level 1 instead of XLA's default 3 halves it (a run's start, compiled cold: `cartpole` on
  gymnax 0.77-0.85 s -> 0.45-0.56 s, `breakout` 2.3-2.4 s -> 1.0-1.3 s);
- XLA's elementwise emitters instead of its MLIR fusion emitters take another quarter off (the start of
  `cartpole` on gymnax at 2 seeds 0.53 -> 0.41 s, `rainbow-cartpole` 0.93 -> 0.69 s, `breakout` 1.14 -> 0.87 s;
  the gymnax pool's reset 0.22 -> 0.12 s).
Both compute the same bits (checked on ten presets' starts at 2 seeds) and run as fast (`breakout`'s start at 2
seeds: 0.14 s at either level, with either emitters). Not for the training loop: the chunk of `cartpole` on gymnax
ran about 1% slower at level 1 and compiled about as fast; with the elementwise emitters it compiled in 1.5 s
instead of 1.86 s but ran 11.0 s instead of 8.7 s. (Level 0 compiles faster still, but its starts differ in the
last bits of some initial parameters, and `breakout`'s filled a replay of 200,000 frames in 1.28 s instead of
0.44 s.)"""


def once_compiler_options() -> dict | None:
    """The XLA options for a program that runs once or a few times, on the default backend (`CPU_ONCE_OPTIONS`)."""
    import jax

    return CPU_ONCE_OPTIONS if jax.default_backend() == "cpu" else None


def cache_dir() -> Path | None:
    """The cache directory jaxdqn uses, or None when `$JAXDQN_COMPILE_CACHE` is `off`."""
    given = os.environ.get(CACHE_ENV_VAR, "").strip()
    if given.lower() == OFF:
        return None
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxdqn" / "xla"


def enable_compile_cache() -> Path | None:
    """Point JAX's persistent compilation cache at `cache_dir()` (unless JAX already has a directory, or the
    cache is off, or the directory cannot be created); return the directory in use, or None."""
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    directory = cache_dir()
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return None
    # A cache entry that cannot be written (a full disk, a file-size limit) only means a compile next time;
    # JAX's warning about it would be a second line beside the error that matters.
    warnings.filterwarnings("ignore", message="Error writing persistent compilation cache entry")
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return directory


PROGRAMS = "programs"
"""The folder of `cache_dir()` that holds exported programs (see `compile_program`)."""
PROGRAM_FORMAT = 3
SUCCESSOR_SUFFIX = ".next"
"""Beside a stored program, the name of the program this process family asked for next (see `_load_ahead`)."""
KEY_PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "numpy", "ml_dtypes", "gymnax")


@functools.cache
def _source_digest() -> str:
    """A hash of jaxdqn's own source files: an exported program is only as current as the code that traced it."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def program_key(name: str, settings, args) -> str:
    """The key under which `compile_program` stores the program `name` built from `settings` (JSON-able: every
    value the program was built from, for jaxdqn a run's configs) for arguments like `args`. It hashes them
    with what else decides a traced program: the arguments' shapes, dtypes and placements, jaxdqn's source
    files, the versions of Python and of JAX and the libraries it traces through, JAX's settings, the
    `XLA_*`, `JAX_*` and `JAXDQN_*` environment variables and the devices."""
    import jax

    leaves, tree = jax.tree.flatten(args)
    parts = {
        "name": name, "settings": settings, "format": PROGRAM_FORMAT,
        "args": [str(tree)] + [[str(jax.typeof(leaf)), str(getattr(leaf, "sharding", None))] for leaf in leaves],
        "jaxdqn": _source_digest(), "python": sys.version,
        "versions": {package: _version(package) for package in KEY_PACKAGES},
        "jax_config": sorted((name, repr(value)) for name, value in jax.config.values.items()),
        "environ": sorted((k, v) for k, v in os.environ.items() if k.startswith(("XLA_", "JAX_", "JAXDQN_"))),
        "devices": [[device.platform, device.device_kind, device.id] for device in jax.devices()],
        "processes": [jax.process_count(), jax.process_index()],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()


def config_settings(configs) -> list | None:
    """The settings (for `program_key`) of a program built by jaxdqn's code from `configs` alone: each config's
    fields but the seed, which reaches the programs as data (keys, the pool's reset state), so every seed shares
    them. None where more than that decides the program: EnvPool's and Gymnasium's programs (they hold this
    process's pool), agents and environments given by import path (their code is not hashed), several
    processes."""
    import jax

    from jaxdqn.agents import AGENTS
    from jaxdqn.config.schema import to_dict
    from jaxdqn.envs.jax_env import GYMNAX_PREFIX

    if not all(c.env.env_id.startswith(GYMNAX_PREFIX) and c.agent in AGENTS for c in configs):
        return None
    if jax.process_count() > 1:
        return None
    settings = []
    for config in configs:
        values = to_dict(config)
        values["loop"] = {k: v for k, v in values["loop"].items() if k != "seed"}
        settings.append(values)
    return settings


def program_path(key: str | None) -> Path | None:
    """Where `compile_program` keeps the program stored under `key`, or None (no key, or the cache is off)."""
    directory = cache_dir()
    return directory / PROGRAMS / f"{key}.jaxexport" if key is not None and directory is not None else None


def _load_program(path: Path):
    """(Exported, output tree, donated leaves, XLA compiler options) stored at `path`, or None when there is none or
    it cannot be read (a miss)."""
    from jax import export

    try:
        stored = pickle.loads(path.read_bytes())
        if stored.get("format") != PROGRAM_FORMAT:
            return None
        return (export.deserialize(bytearray(stored["exported"])), stored["out_tree"], tuple(stored["donated"]),
                stored["compiler_options"])
    except Exception:  # none yet, or a file cut short or written by another version: as if it were not there
        return None


def _write_whole(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole (a partial file renamed into place); a failure only costs a later process
    time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)
    except Exception:
        return


def _save_program(path: Path, exported, out_tree, donated: tuple, compiler_options: dict | None) -> None:
    """Store an exported program at `path`; a failure only means tracing again next time."""
    try:
        data = pickle.dumps({"format": PROGRAM_FORMAT, "exported": bytes(exported.serialize()),
                             "out_tree": out_tree, "donated": donated, "compiler_options": compiler_options})
    except Exception:
        return
    _write_whole(path, data)


def _compile_exported(exported, donated: tuple, device, compiler_options: dict | None):
    """The executable of a loaded program for arguments on `device` (numpy arrays or arrays placed there): compiled
    from the program's own argument shapes, so that a call made with its arguments at hand and one made ahead of
    them (`_load_ahead`) are the same program to JAX's persistent cache."""
    import jax

    placed = jax.sharding.SingleDeviceSharding(device)
    args = [jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=aval.weak_type, sharding=placed)
            for aval in exported.in_avals]
    return jax.jit(exported.call, donate_argnums=donated).lower(*args).compile(compiler_options)


def _on_device(leaves: list, device) -> bool:
    """Whether the arguments `leaves` are numpy values or arrays on `device`, and new arrays go to `device`."""
    import jax

    default = jax.config.jax_default_device
    return (default is None or default == device) and all(
        not isinstance(leaf, jax.Array) or leaf.sharding.device_set == {device} for leaf in leaves)


class _Ahead(NamedTuple):
    """A stored program loaded and compiled ahead of its call, for arguments on `device`, donating the leaves
    `donated`, with the XLA options it was stored with."""

    compiled: Callable
    out_tree: object
    out_avals: tuple
    device: object
    donated: tuple
    compiler_options: dict | None


_ahead: dict = {}
"""Path of a stored program -> Future of its `_Ahead` (None where it could not be loaded)."""
_compiled_here: collections.OrderedDict = collections.OrderedDict()
"""Path of a stored program -> its `_Ahead`, loaded or compiled by this process for arguments on the default
device: asked for again, it is not loaded again (the last `KEPT_HERE` kept; see `_keep_here`)."""
KEPT_HERE = 16
_last_program: list = [None]
"""The path of the program this process asked `compile_program` for last."""
_lock = threading.Lock()
"""Guards `_compiled_here`, which a program prepared on one thread and compiled on another writes
(`PreparedProgram.compile`)."""


def _load_one_ahead(path: Path) -> _Ahead | None:
    """Load and compile the program stored at `path` for arguments on the default device, as its caller will."""
    import jax

    loaded = _load_program(path)
    if loaded is None:
        return None
    exported, out_tree, donated, compiler_options = loaded
    if exported.nr_devices != 1:  # a program over several devices is compiled for its arguments' shardings
        return None
    device = jax.local_devices()[0]  # JAX's default: with several processes, jax.devices()[0] is process 0's
    return _Ahead(_compile_exported(exported, donated, device, compiler_options), out_tree, exported.out_avals, device,
                  donated, compiler_options)


def _load_ahead(path: Path, limit: int = 8) -> None:
    """Start loading, on threads of their own, the programs that followed the one at `path` the last time a
    process asked for it (the chain of `SUCCESSOR_SUFFIX` files, up to `limit`): most of loading a program is XLA
    reading its executable back, which lets go of Python's lock, so a run's loop loads while its start is loaded
    and run. The threads are not daemons: a process that ends early waits for them rather than tear XLA down
    under them."""
    chain = []
    while len(chain) < limit:
        try:
            path = path.with_name(path.with_suffix(SUCCESSOR_SUFFIX).read_text().strip())
        except OSError:
            break
        if path in chain or path in _ahead or not path.exists():
            break
        chain.append(path)

    def load(path, future):
        try:
            future.set_result(_load_one_ahead(path))
        except Exception:  # the caller loads it itself
            future.set_result(None)

    for path in chain:  # a thread each: their reads from XLA's cache overlap too
        _ahead[path] = concurrent.futures.Future()
        threading.Thread(target=load, args=(path, _ahead[path]), name="jaxdqn-load-ahead").start()


def _matches(ahead: _Ahead, leaves: list, donated: tuple, compiler_options: dict | None) -> bool:
    """Whether `ahead` serves arguments placed as `leaves` are, donating `donated`, compiled with
    `compiler_options`."""
    return (ahead.donated == donated and ahead.compiler_options == compiler_options
            and _on_device(leaves, ahead.device))


def _taken_ahead(path: Path, leaves: list, donated: tuple, compiler_options: dict | None) -> _Ahead | None:
    """The program at `path` if it was loaded ahead and `_matches` the call; else None. A program taken is kept
    for the process's later asks (`_compiled_here`)."""
    future = _ahead.pop(path, None)
    ahead = future.result() if future is not None else None
    if ahead is None or not _matches(ahead, leaves, donated, compiler_options):
        return None
    _keep_here(path, ahead)
    return ahead


def _keep_here(path: Path, program: _Ahead) -> None:
    """Keep `program` for this process's later asks for `path`, dropping the least recently asked beyond
    KEPT_HERE (a process that trains many configurations, a test session, would otherwise hold every one)."""
    with _lock:
        _compiled_here[path] = program
        _compiled_here.move_to_end(path)
        while len(_compiled_here) > KEPT_HERE:
            _compiled_here.popitem(last=False)


def _note_successor(path: Path) -> None:
    """Record beside the program this process asked for last that `path` came next, for `_load_ahead`."""
    previous, _last_program[0] = _last_program[0], path
    if previous is None or previous == path or previous.parent != path.parent:
        return
    marker = previous.with_suffix(SUCCESSOR_SUFFIX)
    try:
        if marker.read_text() == path.name:
            return
    except OSError:
        pass
    _write_whole(marker, path.name.encode())


class PreparedProgram(NamedTuple):
    """A program traced and lowered, or loaded, by `prepare_program`: `compile()` compiles it with XLA (or takes it
    loaded ahead) and returns it, called as the function it was made from. Most of that time is XLA's, outside
    Python's lock, so another thread may trace and lower the next program meanwhile; `out_info` are its outputs'
    shapes, dtypes and placements (`jax.ShapeDtypeStruct`s, in the function's output tree), to prepare the next
    program for them before this one has run."""

    out_info: object
    compile: Callable[[], Callable]


def _out_info(out_tree, out_avals, device):
    """The `PreparedProgram.out_info` of a program's outputs `out_avals` (anything with a shape, a dtype and a weak
    type), on `device` (None: placed as its arguments)."""
    import jax

    placed = None if device is None else jax.sharding.SingleDeviceSharding(device)
    return jax.tree.unflatten(out_tree, [jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=aval.weak_type,
                                                              sharding=placed) for aval in out_avals])


def _lowered_program(lowered, leaves: list, compiler_options: dict | None) -> PreparedProgram:
    """The `PreparedProgram` of a program lowered by `jax.jit` for the arguments `leaves`: its outputs on the default
    device where the arguments are (as a stored program's are, see `_out_info`)."""
    import jax

    device = jax.local_devices()[0]
    outs, out_tree = jax.tree.flatten(lowered.out_info)
    return PreparedProgram(_out_info(out_tree, outs, device if _on_device(leaves, device) else None),
                           lambda: lowered.compile(compiler_options))


def _flat_call(compiled: Callable, out_tree) -> Callable:
    """`compiled`, a program of flat arguments and results, called with trees of arguments and returning `out_tree`."""
    import jax

    def call(*call_args):
        return jax.tree.unflatten(out_tree, compiled(*jax.tree.leaves(call_args)))

    return call


def compile_program(fn: Callable, args: tuple, key: str | None = None, donate_argnums: tuple = (),
                    compiler_options: dict | None = None) -> Callable:
    """`fn` compiled for `args` (as `jax.jit(fn, donate_argnums=...).lower(*args).compile(compiler_options)`), called
    as `fn` is: `prepare_program(...).compile()`."""
    return prepare_program(fn, args, key, donate_argnums, compiler_options).compile()


def prepare_program(fn: Callable, args: tuple, key: str | None = None, donate_argnums: tuple = (),
                    compiler_options: dict | None = None) -> PreparedProgram:
    """`fn` traced and lowered for `args` (arrays, or `jax.ShapeDtypeStruct`s placed as the arrays it will be
    called with), to be compiled by XLA with `compiler_options` (as `Lowered.compile` takes them) when the caller
    asks (see `PreparedProgram`).

    With a `key` (`program_key`) and the cache on, the program goes through a copy exported with `jax.export`
    and stored under the key: a later process asking for the same key deserializes it instead of tracing and
    lowering `fn` again, and JAX's persistent cache serves the compiled executable. A missing or unreadable copy
    is a miss: `fn` is traced, exported and stored (a program `jax.export` refuses compiles without the cache's
    copy). The caller vouches that the key holds everything the program depends on (see `program_key`).

    Each stored program also records which stored program the process asked for next (in the order of the calls
    here); a later process asking for it starts loading that chain on other threads (`_load_ahead`), and takes a
    program from there when its turn comes and its arguments are placed as expected. The copy keeps
    `compiler_options`, with which it is loaded ahead."""
    import jax
    from jax import export

    path = program_path(key)
    if path is None or importlib.util.find_spec("flatbuffers") is None:  # jax.export serializes with flatbuffers
        lowered = jax.jit(fn, donate_argnums=donate_argnums).lower(*args)
        return _lowered_program(lowered, jax.tree.leaves(args), compiler_options)
    leaves, in_tree = jax.tree.flatten(args)
    owners = [i for i, arg in enumerate(args) for _ in jax.tree.leaves(arg)]
    donated = tuple(leaf for leaf, owner in enumerate(owners) if owner in donate_argnums)
    # lowering a loaded program readies JAX's LAPACK kernels on CPU, which take their BLAS from
    # scipy.linalg.cython_blas: with scipy.linalg an open stand-in, that module loads alone (0.02 s, not 0.2 s)
    defer_imports(["scipy.linalg"], open_packages=True)
    # a program this process asked for before (an evaluation pool's reset, the training pool's) is taken from
    # here, and is not the next one in the chain that later processes load ahead
    with _lock:  # another thread may be compiling a program prepared before (`PreparedProgram.compile`)
        ahead = _compiled_here.get(path)
        asked_before = ahead is not None
        if asked_before and not _matches(ahead, leaves, donated, compiler_options):
            ahead = None
        elif asked_before:
            _compiled_here.move_to_end(path)
    if not asked_before:
        _note_successor(path)
        ahead = _taken_ahead(path, leaves, donated, compiler_options)
        _load_ahead(path)
    if ahead is not None:
        return PreparedProgram(_out_info(ahead.out_tree, ahead.out_avals, ahead.device),
                               lambda: _flat_call(ahead.compiled, ahead.out_tree))
    loaded = _load_program(path)
    if loaded is None:
        out_trees = []

        def flat_fn(*flat_args):
            flat_out, out_tree = jax.tree.flatten(fn(*jax.tree.unflatten(in_tree, flat_args)))
            out_trees.append(out_tree)
            return flat_out

        try:
            exported = export.export(jax.jit(flat_fn, donate_argnums=donated))(*leaves)
            # run what a later process will load (a deserialized program returns strongly typed arrays)
            loaded = export.deserialize(exported.serialize()), out_trees[0], donated, compiler_options
        except Exception:  # what jax.export refuses (a custom call it does not vouch for) compiles as it would
            return _lowered_program(jax.jit(fn, donate_argnums=donate_argnums).lower(*args), leaves, compiler_options)
        _save_program(path, *loaded)
    exported, out_tree, _, _ = loaded
    device = jax.local_devices()[0]
    if not _on_device(leaves, device):
        lowered = jax.jit(exported.call, donate_argnums=donated).lower(*leaves)
        return PreparedProgram(_out_info(out_tree, exported.out_avals, None),
                               lambda: _flat_call(lowered.compile(compiler_options), out_tree))

    def compile_here():
        compiled = _compile_exported(exported, donated, device, compiler_options)
        _keep_here(path, _Ahead(compiled, out_tree, exported.out_avals, device, donated, compiler_options))
        return _flat_call(compiled, out_tree)

    return PreparedProgram(_out_info(out_tree, exported.out_avals, device), compile_here)
