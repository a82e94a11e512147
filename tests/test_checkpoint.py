"""Checkpoints, exact resume, signals, non-finite stops, bad files and TensorBoard, through the `jaxdqn`
command on real CartPole runs (small: 12,000 steps, a chunk every 500 steps, a checkpoint every 1,000)."""

import fcntl
import glob
import hashlib
import json
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import JAXDQN, assert_same_arrays, final_arrays, jaxdqn, jaxdqn_refused

TOTAL = 12_000
SMALL = ["--total-steps", str(TOTAL), "--learning-starts", "500", "--buffer-size", "2000", "--batch-size", "32",
         "--log-interval", "500", "--checkpoint-interval", "1000", "--keep-checkpoints", "3", "--eval-episodes", "2",
         "--epsilon-decay-steps", "10000"]  # in steps: a half-length run resumed to TOTAL is then the same run
TIMING = ("wall_seconds", "sps")


# Runs the real CLI in a process that dies in the middle of writing a checkpoint's arrays.npz.
CRASH_DURING_SAVE = Path(__file__).with_name("crash_during_save.py")
WRITE_ARRAYS = "jaxdqn.run.checkpoint:write_arrays"


def train(out, *extra):
    return jaxdqn("train", *SMALL, *extra, "--out", str(out))


def records(run: Path) -> list:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(run: Path, reference: Path):
    assert_same_arrays(run, reference)
    assert records(run) == records(reference)


def tree_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*")):
        digest.update(str(file.relative_to(path)).encode())
        if file.is_file():
            digest.update(file.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of TOTAL steps."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = train(out)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, reference):
    """(The first half also loads the initial state's program from the compile cache, where the reference run put
    it: its EnvPool pool, whose state holds the pool's address, is an argument of the program, not a constant.)"""
    out = tmp_path / "half"
    first = jaxdqn("train", *SMALL, "--out", str(out), "--total-steps", str(TOTAL // 2),
                   env={"JAX_LOG_COMPILES": "1"})
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Persistent compilation cache hit for 'jit_init_from'" in first.stderr  # JAX's own log line
    second = jaxdqn("train", "--resume", str(out), "--total-steps", str(TOTAL), "--exact")
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"resumed from {out / 'checkpoints' / 'step_000000006000'} at step 6000 (exact" in second.stdout
    assert_same_run(out, reference)
    assert json.loads((out / "config.json").read_text())["loop"]["total_steps"] == TOTAL
    assert [p.name for p in sorted((out / "checkpoints").glob("step_*"))] == [
        "step_000000010000", "step_000000011000", "step_000000012000"]  # keep_checkpoints 3
    # a finished run is not resumed again without more steps
    again = jaxdqn("train", "--resume", str(out))
    assert again.returncode == 2 and "already reached its 12000 steps" in again.stderr


def test_raising_total_steps_on_resume_keeps_the_schedules_that_span_the_run(tmp_path):
    """beta and the cartpole preset's exploration_fraction keep the run's first length when it is extended."""
    out = tmp_path / "run"
    first = jaxdqn("train", "--total-steps", "2000", "--learning-starts", "500", "--buffer-size", "1000",
                   "--batch-size", "32", "--log-interval", "500", "--checkpoint-interval", "1000", "--prioritized",
                   "--eval-episodes", "2", "--out", str(out))
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads((out / "config.json").read_text())["exploration"]["epsilon_decay_steps"] == 1000  # derived
    second = jaxdqn("train", "--resume", str(out), "--total-steps", "4000")
    assert second.returncode == 0, second.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["loop"]["total_steps"] == 4000 and config["loop"]["schedule_steps"] == 2000
    assert config["exploration"]["epsilon_decay_steps"] == 1000 and config["exploration"]["exploration_fraction"] == 0.5
    records = {r["env_steps"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    assert records[1000]["beta"] == pytest.approx(0.7) and records[2000]["beta"] == records[4000]["beta"] == 1.0
    assert records[1000]["epsilon"] == records[4000]["epsilon"] == pytest.approx(0.05)


@pytest.mark.long
def test_fresh_resume_is_the_default_and_a_later_exact_resume_replays_only_its_pool(tmp_path):
    """The default resume builds a fresh pool at the checkpoint (seconds, however long the run). Its checkpoints
    record where that pool started and only its actions, so an exact resume of one continues bit for bit."""
    args = [*SMALL, "--total-steps", "2000"]
    once, twice = tmp_path / "once", tmp_path / "twice"
    assert train(once, *args).returncode == 0
    shutil.copytree(once, twice)
    resumed = jaxdqn("train", "--resume", str(once), "--total-steps", "4000")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "at step 2000 (a fresh pool of environments from here; the running episodes were cut)" in resumed.stdout
    meta = json.loads((once / "checkpoints" / "step_000000004000" / "meta.json").read_text())
    assert meta["pool_start_step"] == 2000
    assert final_arrays(once)["action_log"].shape == (2000, 1)  # the steps since the fresh pool, not 4000
    assert jaxdqn("train", "--resume", str(twice), "--total-steps", "3000").returncode == 0
    exact = jaxdqn("train", "--resume", str(twice), "--total-steps", "4000", "--exact")
    assert exact.returncode == 0, exact.stderr[-2000:]
    assert "at step 3000 (exact" in exact.stdout
    assert_same_run(twice, once)


def test_cut_episodes_closes_the_stored_steps_so_nothing_joins_the_next_pool():
    """A fresh pool's first episodes never join the last stored steps: the cut stores the observation the
    checkpoint's pool stood at as the last step's next observation, in a slot that is not a transition."""
    import jax
    import jax.numpy as jnp

    from jaxdqn.config.build import make_config
    from jaxdqn.run.driver import build_rollout

    cfg = make_config(num_envs=2, train_frequency=2, total_steps=1000, learning_starts=100, buffer_size=200,
                      batch_size=8, log_interval=100)
    rollout = build_rollout(cfg)
    state, _ = jax.jit(rollout.run_chunk)(jax.jit(rollout.init)(jax.random.PRNGKey(0)), jnp.int32(20), 10**6)
    position = int(state.agents.replay.position[0])
    cut = rollout.cut_episodes(state)
    rollout.env.close()
    storage = cut.agents.replay.storage
    np.testing.assert_array_equal(storage.obs[0, :, position], state.obs[0])
    assert not storage.real[0, :, position].any()
    assert int(cut.agents.replay.position[0]) == (position + 1) % 100
    assert not cut.done.any() and not np.asarray(cut.stats.running_length).any()
    np.testing.assert_array_equal(cut.stats.episodes, state.stats.episodes)  # the cut episodes are not counted


def test_sigterm_saves_and_says_how_to_resume(tmp_path, reference):
    out = tmp_path / "term"
    process = subprocess.Popen([JAXDQN, "train", *SMALL, "--out", str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    first_checkpoint = out / "checkpoints" / "step_000000001000"
    while not first_checkpoint.exists() and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr[-2000:]
    assert f"resume with: jaxdqn train --resume {out}" in stderr
    stopped_at = int(re.search(r"saved a checkpoint at step (\d+)", stderr).group(1))
    assert 1000 <= stopped_at < TOTAL
    assert (out / "checkpoints" / f"step_{stopped_at:012d}").is_dir()
    assert records(out)[-1]["env_steps"] == stopped_at
    resumed = jaxdqn("train", "--resume", str(out), "--exact")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(out, reference)


def test_crash_during_save_keeps_the_previous_checkpoint(tmp_path, reference):
    out = tmp_path / "crash"
    # dies halfway through writing the second checkpoint's arrays.npz (step 2000; each checkpoint writes its
    # arrays.npz, then its replay.npz)
    crashed = subprocess.run([sys.executable, str(CRASH_DURING_SAVE), WRITE_ARRAYS, "3", "train", *SMALL,
                              "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [".tmp-step_000000002000", "step_000000001000"]
    resumed = jaxdqn("train", "--resume", str(out), "--exact")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "at step 1000" in resumed.stdout
    assert not list((out / "checkpoints").glob(".tmp-*"))
    assert_same_run(out, reference)


def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_config(**changes):
    from jaxdqn.config.schema import from_dict, replace, to_dict

    def edit(run: Path):
        config = from_dict(json.loads((run / "config.json").read_text()))
        (run / "config.json").write_text(json.dumps(to_dict(replace(config, **changes))))
    return edit


def _latest(name):
    return lambda run: sorted((run / "checkpoints").glob("step_*"))[-1] / name


BAD_RUNS = {
    "missing dir": (lambda run: shutil.rmtree(run), [], "is not a directory"),
    "missing config": (lambda run: (run / "config.json").unlink(), [], "config.json is missing"),
    "no checkpoint": (lambda run: shutil.rmtree(run / "checkpoints"), [], "holds no complete checkpoint"),
    "truncated arrays": (lambda run: _truncate(_latest("arrays.npz")(run)), [], "arrays.npz is truncated or corrupt"),
    "corrupt arrays": (lambda run: _flip_byte(_latest("arrays.npz")(run)), [], "arrays.npz is truncated or corrupt"),
    "truncated meta": (lambda run: _truncate(_latest("meta.json")(run)), [],
                       "meta.json is missing, truncated or corrupt"),
    "other network": (_edit_config(hidden_sizes=(64,)), [],
                      "incompatible config (hidden_sizes: checkpoint has (120, 84), config has (64,))"),
    "other env": (_edit_config(env_id="Acrobot-v1"), [],
                  "env_id: checkpoint has 'CartPole-v1', config has 'Acrobot-v1'"),
    "other replay": (_edit_config(prioritized=True), [], "prioritized: checkpoint has False, config has True"),
    "changed field": (lambda run: None, ["--learning-rate", "1e-3"],
                      "only --total-steps and --exact may be given with --resume"),
    "lower total": (lambda run: None, ["--total-steps", "1000"], "can only be raised on resume"),
}


def test_bad_run_dir_is_one_clear_error_and_untouched(tmp_path, reference):
    """Each broken copy of a real run is refused on --resume in one line and left as it was (the command's `main`
    run for every case in one process)."""
    runs, befores, commands = [], [], []
    for i, (break_it, args, _) in enumerate(BAD_RUNS.values()):
        run = tmp_path / f"run{i}"
        shutil.copytree(reference, run)
        break_it(run)
        runs.append(run)
        befores.append(tree_hash(run) if run.exists() else None)
        commands.append(["train", "--resume", run, *args, *([] if "--total-steps" in args else
                                                           ["--total-steps", str(2 * TOTAL)])])
    for case, (_, _, message), (code, stderr), run, before in zip(BAD_RUNS, BAD_RUNS.values(),
                                                                  jaxdqn_refused(commands), runs, befores):
        assert code == 2 and len(stderr.strip().splitlines()) == 1, (case, stderr)
        assert stderr.startswith("jaxdqn: error: --") and message in stderr, (case, stderr)
        assert (tree_hash(run) if run.exists() else None) == before, case


@pytest.mark.parametrize("replay", [[], ["--prioritized"]])  # the sum tree never sees the NaN TD errors either
def test_non_finite_loss_stops_at_a_named_step_and_keeps_the_last_good_checkpoint(tmp_path, replay):
    out = tmp_path / "nan"
    result = jaxdqn("train", *SMALL, *replay, "--learning-rate", "1e30", "--learning-starts", "1000",
                    "--checkpoint-interval", "500", "--out", str(out))
    assert result.returncode == 3
    assert "non-finite loss or parameters at env step 1500" in result.stderr
    assert "the last good checkpoint" in result.stderr and "step_000000001000 is kept" in result.stderr
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step_000000000500", "step_000000001000"]
    from jaxdqn.run.checkpoint import load_latest
    from jaxdqn.config.schema import from_dict

    good = load_latest(out, from_dict(json.loads((out / "config.json").read_text())))  # checksum verified
    assert good.env_steps == 1000 and good.updates == 0


def test_a_run_stopped_before_its_first_save_is_replaced_with_overwrite(tmp_path):
    """Never a directory that both --out and --resume refuse: --overwrite replaces it, once the new run is
    checked and compiled."""
    out = tmp_path / "run"
    args = [*SMALL, "--total-steps", "3000", "--checkpoint-interval", "0", "--out", str(out)]
    failed = jaxdqn("train", *args, "--learning-rate", "1e30")
    assert failed.returncode == 3 and (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()
    resumed = jaxdqn("train", "--resume", str(out))
    assert resumed.returncode == 2 and len(resumed.stderr.strip().splitlines()) == 1
    assert f"holds no complete checkpoint (step_* folder): the run stopped before its first save; start it again " \
           f"with jaxdqn train --out {out} --overwrite" in resumed.stderr
    again = jaxdqn("train", *args)
    assert again.returncode == 2 and "already holds a run; choose a new directory, resume it" in again.stderr
    before = tree_hash(out)
    bad = jaxdqn("train", *args, "--overwrite", "--gamma", "2")
    assert bad.returncode == 2 and tree_hash(out) == before  # refused before anything was removed
    replaced = jaxdqn("train", *args, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert records(out)[0]["env_steps"] == 500 and len(records(out)) == 6  # only the new run's records
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 3000


def test_a_save_that_hits_a_file_size_limit_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, reference):
    import resource

    newest = reference / "checkpoints" / "step_000000012000" / "arrays.npz"
    # arrays.npz grows by the 1,000 logged actions (uint8) of every 1,000 steps: the first save fits, the second
    # does not (replay.npz, metrics and events stay smaller)
    limit = newest.stat().st_size - TOTAL + 1000 + 500

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "full"
    result = subprocess.run([JAXDQN, "train", *SMALL, "--out", str(out)], capture_output=True, text=True,
                            timeout=600, preexec_fn=limit_file_size)
    assert result.returncode == 4, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"jaxdqn: checkpoint step_000000002000 could not be written (File too large); "
        f"{out / 'checkpoints' / 'step_000000001000'} is kept; resume with: jaxdqn train --resume {out}"]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_000000001000"]  # the partial one removed
    resumed = jaxdqn("train", "--resume", str(out), "--exact")
    assert resumed.returncode == 0 and "at step 1000 (exact" in resumed.stdout, resumed.stderr[-2000:]
    assert_same_run(out, reference)


def test_killed_at_random_moments_it_resumes_every_time_to_the_same_result(tmp_path, reference):
    """2 SIGKILLs: one at a seeded random moment, one in the middle of writing a checkpoint file (the K-th, K random);
    after each, the command a user would type: --resume --exact, or --overwrite when no
    checkpoint was complete yet."""
    out, rng = tmp_path / "killed", np.random.default_rng(0)

    def next_command():
        if (out / "checkpoints").is_dir() and list((out / "checkpoints").glob("step_*")):
            return [JAXDQN, "train", "--resume", str(out), "--exact"]
        return [JAXDQN, "train", *SMALL, "--out", str(out), "--overwrite"]

    kills = mid_save = 0
    while kills < 2:
        command, delay = next_command(), rng.uniform(2.0, 8.0)
        if kills % 2:  # killed by the save itself, halfway through its K-th file
            command = [sys.executable, str(CRASH_DURING_SAVE), WRITE_ARRAYS, str(rng.integers(1, 7)), *command[1:]]
            delay = 600
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.kill()
        _, stderr = process.communicate(timeout=60)
        if process.returncode == 0 or (out / "summary.json").exists():  # finished before the kill: start again
            shutil.rmtree(out)
            kills += process.returncode != 0
            continue
        assert process.returncode == -signal.SIGKILL, stderr[-2000:]
        kills += 1
        mid_save += bool(out.exists() and list((out / "checkpoints").glob(".tmp-*")))
    last = subprocess.run(next_command(), capture_output=True, text=True, timeout=600)
    assert last.returncode == 0, last.stderr[-2000:]
    assert_same_run(out, reference)
    print(f"{kills} kills, {mid_save} of them during a save")


def test_a_signal_during_the_final_evaluation_still_writes_the_summary(tmp_path):
    out = tmp_path / "eval"
    process = subprocess.Popen([JAXDQN, "train", *SMALL, "--total-steps", "2000", "--eval-episodes", "3000",
                                "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    final = out / "checkpoints" / "step_000000002000"
    while not final.exists() and process.poll() is None:  # the final save runs beside the evaluation
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines() == [
        f"jaxdqn: interrupted by SIGINT during the final evaluation: the run is complete, its last checkpoint is "
        f"{final}, and summary.json has no evaluation (jaxdqn evaluate {out} runs it)"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 2000 and summary["eval_return_mean"] is None
    assert jaxdqn("evaluate", str(out), "--episodes", "2").returncode == 0


def test_without_replay_checkpoints_are_small_and_resume_refills(tmp_path, reference):
    out = tmp_path / "noreplay"
    first = jaxdqn("train", *SMALL, "--checkpoint-replay", "False", "--total-steps", "2000", "--out", str(out))
    assert first.returncode == 0, first.stderr[-2000:]
    meta = json.loads((out / "checkpoints" / "step_000000002000" / "meta.json").read_text())
    assert meta["has_replay"] is False and not [leaf for leaf in meta["leaves"] if ".replay" in leaf["path"]]
    assert not (out / "checkpoints" / "step_000000002000" / "replay.npz").exists()
    small = (out / "checkpoints" / "step_000000002000" / "arrays.npz").stat().st_size
    newest = reference / "checkpoints" / "step_000000012000"
    full = sum((newest / name).stat().st_size for name in ("arrays.npz", "replay.npz"))
    assert small < full - 2000 * 4 * 4  # at least the replay's observations (stored once each) are left out
    # the replay is on disk once: in the newest checkpoint; the older kept ones resume by refilling it
    for older in ("step_000000010000", "step_000000011000"):
        meta = json.loads((reference / "checkpoints" / older / "meta.json").read_text())
        assert meta["has_replay"] is False and not (reference / "checkpoints" / older / "replay.npz").exists()
    assert json.loads((newest / "meta.json").read_text())["has_replay"] is True
    # resumed on a terminal: a progress bar instead of one line per chunk
    returncode, screen = run_on_a_terminal([JAXDQN, "train", "--resume", str(out), "--total-steps", "3000"])
    assert returncode == 0, screen[-2000:]
    assert "refilling it, learning resumes after step 2500" in screen
    assert re.search(r"3000/3000 \[\d\d:\d\d<\d\d:\d\d", screen), screen[-2000:]  # tqdm: count [elapsed<ETA
    assert "step      2500/3000 |" not in screen
    updates = [json.loads(line)["updates"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert updates[-3:] == [150, 150, 200]  # no update at 2500 (refilling), 50 in the chunk after


def run_on_a_terminal(command) -> tuple[int, str]:
    """Run `command` with stdout on a pseudo-terminal; return (exit code, everything it printed)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # rows, columns
    process = subprocess.Popen(command, stdout=terminal, stderr=terminal, stdin=subprocess.DEVNULL)
    os.close(terminal)
    chunks = []
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(controller)
    return process.wait(timeout=600), b"".join(chunks).decode(errors="replace")


def read_scalars(run: Path) -> dict:
    """tag -> [(step, value)] from the run's TensorBoard event files (TFRecord framing, Event protos)."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    for path in glob.glob(str(run / "events.out.tfevents.*")):
        data, offset = Path(path).read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_events_hold_the_scalars(reference):
    scalars = read_scalars(reference)
    for tag in ("return_mean_100", "length_mean_100", "loss", "q_mean", "epsilon", "sps"):
        assert tag in scalars, tag
    assert [step for step, _ in scalars["epsilon"]] == list(range(500, TOTAL + 1, 500))
    metrics = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert scalars["return_mean_100"][-1][1] == pytest.approx(metrics[-1]["return_mean_100"][0])
    assert scalars["length_mean_100"][-1][1] == pytest.approx(metrics[-1]["length_mean_100"][0])
    assert len(scalars["loss"]) == TOTAL // 500 - 1  # no loss before learning starts


def test_restore_params_gives_the_latest_checkpoint_params(reference):
    from jaxdqn.run.checkpoint import restore_params

    cfg, params = restore_params(reference)
    assert cfg.loop.total_steps == TOTAL
    kernel = params["params"]["MLPTorso_0"]["Dense_0"]["kernel"]
    assert kernel.shape == (1, 4, 120)  # leading seed axis
    meta = json.loads(sorted((reference / "checkpoints").glob("step_*"))[-1].joinpath("meta.json").read_text())
    kernel_path = ".agents.params['params']['MLPTorso_0']['Dense_0']['kernel']"
    index = [leaf["path"] for leaf in meta["leaves"]].index(kernel_path)
    np.testing.assert_array_equal(kernel, final_arrays(reference)[f"leaf_{index:05d}"])


def test_a_prioritized_checkpoint_from_before_pending_priorities_resumes(tmp_path):
    """Checkpoints of prioritized runs written before DQN's state held its pending priorities have every array
    but those: the resume refills them from a fresh init (none pending) and keeps the saved replay."""
    import jax

    from jaxdqn.run.checkpoint import load_latest, load_run_config
    from jaxdqn.run.driver import build_rollout
    from jaxdqn.run.resume import resume_state

    from jaxdqn.config.build import make_config
    from jaxdqn.run.driver import run_training

    out = tmp_path / "per"
    run_training(make_config(prioritized=True, total_steps=1_000, learning_starts=500, buffer_size=1_000, batch_size=32,
                             log_interval=500, eval_episodes=1), out, log=lambda _: None)
    cfg = load_run_config(out)
    checkpoint = load_latest(out, cfg)
    assert any(".agents.pending" in path for path in checkpoint.leaves) and checkpoint.has_replay
    older = checkpoint._replace(leaves={path: leaf for path, leaf in checkpoint.leaves.items()
                                        if ".agents.pending" not in path})
    state = resume_state(build_rollout(cfg), older, jax.random.PRNGKey(0), exact=True)  # exact: no episode cut
    assert not bool(state.agents.pending.valid[0])
    leaves = checkpoint.leaves[".agents.replay.priorities.levels[2]"]  # 1,000 slots: 3 levels, the leaves last
    assert np.count_nonzero(leaves) > 500
    np.testing.assert_array_equal(state.agents.replay.priorities.levels[-1], leaves)
