"""Checkpoints of the whole training state, written atomically in the background, and the resume schemes.

Layout of a run directory's checkpoints::

    RUN/checkpoints/step_000000004000/arrays.npz   the state's arrays but the replay, plus the action log
    RUN/checkpoints/step_000000004000/replay.npz   the agent's replay (its optional fields), newest checkpoint only
    RUN/checkpoints/step_000000004000/meta.json    config, counters, leaf names/shapes/dtypes, sha256 of each file

What is saved: `LoopState` (jaxdqn/loop/rollout.py) without the environment state, i.e. every agent's
state (for DQN: online and target parameters, optimiser state, replay with its sum tree unless
`checkpoint_replay` is False, hyperparameters), loop keys, iteration counter, last observations and done
flags, episode statistics; and the host counters (env steps, periods done, updates done, the step after
which learning runs, the step the pool was started at). Once a newer checkpoint is complete, the older
kept ones lose their replay.npz (unless `replay_in_every_checkpoint`): a 7 GB replay is on disk once,
and an older checkpoint resumes like one saved without replay.

Asynchronous saves (`CheckpointWriter`): the state is copied to host memory, then a thread writes it
while training goes on; at most one save is in flight, and a failed one (a full disk, a file-size
limit) is reported at the next save or at the end, with the previous checkpoints kept.

Atomic writes: a checkpoint is written into `checkpoints/.tmp-step_...`, each file is fsynced, then the
folder is renamed to `step_...` (a rename is atomic on POSIX) and the parent folder fsynced. A crash at
any moment leaves either the old set of complete checkpoints or the old set plus the new one; leftover
`.tmp-*` folders are never read and are removed by the next save. `meta.json` holds a sha256 of each
file, so a truncated or corrupted checkpoint is detected before anything is compiled. We use this small
scheme rather than orbax-checkpoint: the state is a few host-side NumPy arrays, the rename gives the
atomicity orbax gives, and it adds no dependency.

Resume. EnvPool's environment state cannot be read or written. By default a resumed run starts a fresh
pool (new environment seeds) at the checkpoint and cuts the running episodes there (jaxdqn/run/resume.py):
bounded, seconds plus loading. Exact resume instead brings the pool back: the checkpoint carries the log
of every action sent to the pool since it was built (one row of A x N action indices per iteration,
uint8 when the task has at most 256 actions). On resume the pool is rebuilt with the same seeds and size,
reset, and the logged actions are replayed through the backend's step inside one jitted `lax.scan`
(jaxdqn/run/resume.py; an environment's trajectory depends only on its seed and its actions; every pool
is made with batch_size == num_envs, so no environment is skipped or reordered). The replayed observations
are then compared bit for bit with the saved ones, so a non-deterministic environment is reported rather
than silently resumed. On CPU an exact resume of N steps for N more and a run of 2N steps give bit-identical
parameters and metrics when no schedule spans the run: a raised total_steps keeps beta's annealing, the
tabular alpha decay and an exploration_fraction on the run's first length (schedule_steps), where a 2N run
stretches them over 2N.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn.agents import resolve_agent
from jaxdqn.config.build import config_from_dict
from jaxdqn.config.schema import ConfigError, flat_dict, to_dict
from jaxdqn.envs import env_spec

FORMAT_VERSION = 2
"""Version 1 was written before the agent/loop redesign (a different state layout); it is refused."""
CHECKPOINT_DIR = "checkpoints"
ARRAYS_FILE = "arrays.npz"
REPLAY_FILE = "replay.npz"
META_FILE = "meta.json"
# Fields that may differ between a checkpoint and the config that resumes it.
RESUMABLE_CHANGES = frozenset({"total_steps", "schedule_steps"})


class CheckpointError(Exception):
    """A checkpoint or run directory cannot be resumed; the message says which file and why."""


class NoCheckpoint(CheckpointError):
    """The run directory holds no complete checkpoint: the run stopped before its first save."""


class Checkpoint(NamedTuple):
    """A loaded checkpoint: state leaves (keyed by tree path), the action log and the host counters."""

    path: Path
    config: dict
    env_steps: int
    periods_done: int
    updates: int
    learn_after: int
    has_replay: bool
    leaves: dict  # tree-path string -> np.ndarray
    action_log: np.ndarray  # (iterations since pool_start_step, S * N)
    pool_start_step: int
    """The env step at which the pool of the checkpointed run was built and reset (0, or where a fresh resume
    started one); the action log starts there."""
    processes: int = 1
    """How many processes trained the run (`jaxdqn launch`); a resume needs as many."""


def saved_state(state, with_replay: bool, optional_fields: tuple = ()):
    """The part of a `LoopState` that is saved: everything but the environment state, and without the agent's
    `optional_fields` (its replay) unless `with_replay`."""
    state = state._replace(env_state=None)
    if not with_replay and optional_fields:
        state = state._replace(agents=state.agents._replace(**{name: None for name in optional_fields}))
    return state


def named_leaves(tree) -> dict:
    """Flatten a pytree into {path string: leaf}, in tree order."""
    return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def checkpoint_paths(run_dir) -> list[Path]:
    """Complete checkpoints of a run, oldest first (by step)."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_"))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_arrays(path: Path, arrays: dict) -> None:
    """Write `arrays` to `path` as an .npz file and fsync it."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())


class HostState(NamedTuple):
    """A host copy of the saved part of a `LoopState`: leaves by tree path, the replay's apart."""

    leaves: dict
    replay_leaves: dict  # the agent's optional fields (its replay); empty when they are not saved


def host_state(state, with_replay: bool, optional_fields: tuple = ()) -> HostState:
    """Copy the saved part of `state` to the host (its own NumPy buffers: training may reuse the device's at
    once), split into the replay (the agent's `optional_fields`) and the rest."""
    leaves = {path: np.array(leaf, copy=True)
              for path, leaf in named_leaves(jax.device_get(saved_state(state, with_replay, optional_fields))).items()}
    prefixes = tuple(f".agents.{name}" for name in optional_fields) if with_replay else ()
    replay = {path: leaf for path, leaf in leaves.items() if path.startswith(prefixes)} if prefixes else {}
    return HostState({path: leaf for path, leaf in leaves.items() if path not in replay}, replay)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(data, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _leaf_specs(leaves: dict) -> list:
    return [{"path": path, "shape": list(np.shape(leaf)), "dtype": str(np.asarray(leaf).dtype)}
            for path, leaf in leaves.items()]


def write_checkpoint(run_dir, cfg, host: HostState, action_log: np.ndarray, counters: dict) -> Path:
    """Write a complete checkpoint of `host` atomically under RUN/checkpoints/, keep the newest
    `cfg.checkpoint.keep_checkpoints`, and drop the replay from the older ones unless
    `cfg.checkpoint.replay_in_every_checkpoint`.

    `counters` holds the host-side counters (env_steps, periods_done, updates, learn_after, pool_start_step);
    `action_log` the actions sent to the pool since pool_start_step. Returns the checkpoint folder. An OSError
    (a full disk, a file-size limit) leaves the previous checkpoints as they were.
    """
    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{counters['env_steps']:012d}"
    tmp = root / f".tmp-{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    arrays = {f"leaf_{i:05d}": leaf for i, leaf in enumerate(host.leaves.values())}
    arrays["action_log"] = np.asarray(action_log)
    write_arrays(tmp / ARRAYS_FILE, arrays)
    meta = {"format_version": FORMAT_VERSION, "config": to_dict(cfg),
            **{key: int(value) for key, value in counters.items()},
            "has_replay": bool(host.replay_leaves), "leaves": _leaf_specs(host.leaves),
            "arrays_sha256": _sha256(tmp / ARRAYS_FILE)}
    if host.replay_leaves:
        write_arrays(tmp / REPLAY_FILE, {f"leaf_{i:05d}": leaf for i, leaf in enumerate(host.replay_leaves.values())})
        meta.update(replay_leaves=_leaf_specs(host.replay_leaves), replay_sha256=_sha256(tmp / REPLAY_FILE))
    _write_json(tmp / META_FILE, meta)
    _fsync_dir(tmp)
    final = root / name
    if final.exists():  # only after a crash between this rename and a later one; same step, same state
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    kept = checkpoint_paths(run_dir)
    for old in kept[:-cfg.checkpoint.keep_checkpoints]:
        shutil.rmtree(old)
    if not cfg.checkpoint.replay_in_every_checkpoint:
        for older in kept[-cfg.checkpoint.keep_checkpoints:-1]:
            drop_replay(older)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale)
    return final


def drop_replay(path: Path) -> None:
    """Remove the replay of the checkpoint in `path` (its meta first, so a crash leaves it consistent): it
    then resumes as one saved without replay, refilling it."""
    meta_path = path / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return
    if meta.pop("replay_leaves", None) is not None:
        meta.pop("replay_sha256", None)
        meta["has_replay"] = False
        _write_json(meta_path, meta)
    (path / REPLAY_FILE).unlink(missing_ok=True)


def save_checkpoint(run_dir, cfg, state, action_log: np.ndarray, counters: dict, optional_fields: tuple = ()
                    ) -> Path:
    """Copy `state` to the host and write it as a checkpoint now (see `write_checkpoint`)."""
    host = host_state(state, cfg.checkpoint.checkpoint_replay, optional_fields)
    return write_checkpoint(run_dir, cfg, host, action_log, counters)


class CheckpointSaveError(CheckpointError):
    """A checkpoint could not be written (a full disk, a file-size limit); the previous ones are kept."""


class CheckpointWriter:
    """Saves checkpoints in the background: `save` copies the state to the host and returns, a thread writes
    it, and at most one save is in flight (a new `save`, and `wait`, first finish the one before)."""

    def __init__(self, run_dir, cfg, optional_fields: tuple = (), last: Path | None = None):
        self.run_dir, self.cfg, self.optional_fields = run_dir, cfg, optional_fields
        self.last = last
        """The newest complete checkpoint."""
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._pending: str | None = None

    def save(self, state, action_log: np.ndarray, counters: dict) -> None:
        """Start saving `state` (copied to the host now); raises CheckpointSaveError if the previous save failed."""
        self.wait()
        host = host_state(state, self.cfg.checkpoint.checkpoint_replay, self.optional_fields)
        self._pending = f"step_{counters['env_steps']:012d}"
        self._thread = threading.Thread(target=self._write, args=(host, np.array(action_log), dict(counters)),
                                        name="jaxdqn-checkpoint", daemon=False)
        self._thread.start()

    def _write(self, host: HostState, action_log: np.ndarray, counters: dict) -> None:
        try:
            self.last = write_checkpoint(self.run_dir, self.cfg, host, action_log, counters)
        except BaseException as error:  # reported by `wait`, in the training thread
            self._error = error

    def wait(self) -> Path | None:
        """Finish the save in flight; return the newest complete checkpoint, or raise CheckpointSaveError
        (one line) if the save failed. The failed save's partial files are removed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            shutil.rmtree(Path(self.run_dir) / CHECKPOINT_DIR / f".tmp-{self._pending}", ignore_errors=True)
            reason = error.strerror if isinstance(error, OSError) and error.strerror else repr(error)
            kept = f"{self.last} is kept" if self.last is not None else "no checkpoint was saved before"
            raise CheckpointSaveError(f"checkpoint {self._pending} could not be written ({reason}); {kept}")
        return self.last

    def close(self) -> None:
        """Finish the save in flight, if any, ignoring its outcome (after training failed for another reason)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def config_differences(saved: dict, current: dict) -> list[str]:
    """Fields (outside RESUMABLE_CHANGES) whose values differ, as 'field: saved X, now Y'."""
    names = sorted((set(saved) | set(current)) - RESUMABLE_CHANGES)
    return [f"{name}: checkpoint has {saved.get(name)!r}, config has {current.get(name)!r}"
            for name in names if saved.get(name) != current.get(name)]


def load_latest(run_dir, cfg) -> Checkpoint:
    """Load and verify the newest complete checkpoint of `run_dir` for resuming with `cfg`.

    Raises CheckpointError (one line, naming the file) for a missing, truncated or corrupt checkpoint
    or one saved with a config that differs from `cfg` in anything but total_steps. Reads only.
    """
    paths = checkpoint_paths(run_dir)
    if not paths:
        raise NoCheckpoint(f"{Path(run_dir) / CHECKPOINT_DIR} holds no complete checkpoint (step_* folder)")
    path = paths[-1]
    try:
        meta = json.loads((path / META_FILE).read_text())
        leaf_specs, expected_sha = meta["leaves"], meta["arrays_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path}: {META_FILE} is missing, truncated or corrupt "
                              f"({type(error).__name__})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {meta.get('format_version')!r}, "
                              f"this jaxdqn reads version {FORMAT_VERSION} (version 1 came from jaxdqn before "
                              "its agent/loop redesign: resume it with that version, or train anew)")
    files = [(ARRAYS_FILE, leaf_specs, expected_sha)]
    if meta.get("replay_leaves"):
        files.append((REPLAY_FILE, meta["replay_leaves"], meta.get("replay_sha256")))
    for file_name, _specs, sha in files:
        if not (path / file_name).is_file():
            raise CheckpointError(f"checkpoint {path}: {file_name} is missing")
        if _sha256(path / file_name) != sha:
            raise CheckpointError(f"checkpoint {path}: {file_name} is truncated or corrupt (sha256 differs from "
                                  f"{META_FILE})")
    try:
        saved_config = flat_dict(config_from_dict(meta["config"]))
    except (ConfigError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path}: its config cannot be read ({error})") from None
    differences = config_differences(saved_config, flat_dict(cfg))
    if differences:
        raise CheckpointError(f"checkpoint {path} was saved with an incompatible config ("
                              + "; ".join(differences) + "); only total_steps may change on resume")
    leaves = {}
    for file_name, specs, _sha in files:
        try:
            with np.load(path / file_name) as data:
                leaves.update({spec["path"]: data[f"leaf_{i:05d}"] for i, spec in enumerate(specs)})
                if file_name == ARRAYS_FILE:
                    action_log = data["action_log"]
        except (OSError, ValueError, KeyError) as error:
            raise CheckpointError(f"checkpoint {path}: {file_name} cannot be read ({error})") from None
    return Checkpoint(path, meta["config"], int(meta["env_steps"]), int(meta["periods_done"]),
                      int(meta["updates"]), int(meta["learn_after"]), bool(meta["has_replay"]), leaves,
                      action_log, int(meta.get("pool_start_step", 0)), int(meta.get("processes", 1)))


def restore_state(checkpoint: Checkpoint, template, prefix: str = ""):
    """Rebuild the saved part of a pytree from `checkpoint`, shaped like `template` (e.g. the saved part of
    `jax.eval_shape(rollout.init, key)`), whose leaves were saved under `prefix` + their path; raise
    CheckpointError naming the first leaf that does not fit."""
    wanted = {prefix + path: leaf for path, leaf in named_leaves(template).items()}
    missing = [path for path in wanted if path not in checkpoint.leaves]
    if missing or (not prefix and len(wanted) != len(checkpoint.leaves)):
        raise CheckpointError(f"checkpoint {checkpoint.path} does not match this config's training state "
                              f"(first missing array: {missing[0] if missing else 'none'}; "
                              f"{len(checkpoint.leaves)} arrays saved, {len(wanted)} expected)")
    values = []
    for path, spec in wanted.items():
        array = checkpoint.leaves[path]
        if array.shape != tuple(spec.shape) or array.dtype != spec.dtype:
            raise CheckpointError(f"checkpoint {checkpoint.path}: array {path} has shape {array.shape} "
                                  f"{array.dtype}, this config needs {tuple(spec.shape)} {spec.dtype}")
        values.append(array)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), values)


def load_run_config(run_dir) -> Any:
    """The Config of a run directory (its config.json); CheckpointError (one line) if it is missing or invalid."""
    path = Path(run_dir) / "config.json"
    try:
        return config_from_dict(json.loads(path.read_text()))
    except OSError:
        raise CheckpointError(f"{path} is missing") from None
    except (ValueError, TypeError, ConfigError) as error:
        raise CheckpointError(f"{path} is not a valid jaxdqn config ({error})") from None


def restore_params(run_dir) -> tuple[Any, Any]:
    """Return (Config, evaluation params) of a run's newest complete checkpoint.

    The params (the agent's `policy` of its state: a network's parameters, a Q-table, ...) carry a leading
    agent axis, as `evaluate.evaluate_policy` expects. Raises CheckpointError if the run has no readable
    checkpoint.
    """
    cfg = load_run_config(run_dir)
    checkpoint = load_latest(run_dir, cfg)
    fns = resolve_agent(cfg.agent).build(cfg, env_spec(cfg.env.env_id))
    # a sweep group's checkpoint holds every configuration's seeds, a data-parallel run's every share of them
    slots = checkpoint.leaves[".keys"].shape[0]
    hypers = jax.tree.map(lambda x: jax.ShapeDtypeStruct((slots, *np.shape(x)), np.asarray(x).dtype),
                          fns.hyperparameters)
    template = jax.eval_shape(jax.vmap(fns.init), jax.ShapeDtypeStruct((slots, 2), np.uint32), hypers)
    if fns.optional_fields:
        template = template._replace(**{name: None for name in fns.optional_fields})
    agents = restore_state(checkpoint, template, prefix=".agents")
    agents = jax.tree.map(lambda x: x[:slots // cfg.loop.data_parallel], agents)  # an agent's shares are alike
    # device arrays: a NumPy array closed over by a custom-gradient function (the CNNs' GEMM convolution) is refused
    return cfg, jax.tree.map(jnp.asarray, fns.policy(agents))
