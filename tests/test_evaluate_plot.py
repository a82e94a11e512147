"""Greedy evaluation with video, the per-episode log, and `jaxdqn plot` / `jaxdqn evaluate` as a user
types them, on real EnvPool CartPole (and LunarLander for rendering)."""

import io
import json
from typing import NamedTuple

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn.config.build import make_config
from jaxdqn.config.schema import Config, plan
from jaxdqn.evaluate import EvaluationError, evaluate_policy
from jaxdqn.plot import draw_runs, load_run, rolling_mean
from jaxdqn.run.driver import build_rollout
from jaxdqn.run.recorder import EPISODES_HEADER, episode_rows
from tests.conftest import jaxdqn

SHORT_RUN = ["--total-steps", "5000", "--learning-starts", "1000", "--log-interval", "1000",
             "--epsilon-decay-steps", "4000", "--eval-episodes", "2"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two real 5k-step CartPole runs: uniform replay with 2 seeds, and prioritized replay with another seed."""
    root = tmp_path_factory.mktemp("runs")
    uniform, prioritized = root / "uniform", root / "prioritized"
    for out, extra in ((uniform, ["--num-seeds", "2", "--seed", "0"]),
                       (prioritized, ["--prioritized", "True", "--seed", "1"])):
        result = jaxdqn("train", *SHORT_RUN, *extra, "--out", str(out))
        assert result.returncode == 0, result.stderr
    return uniform, prioritized


class Trained(NamedTuple):
    cfg: Config
    params: object  # leading seed axis
    state: object
    metrics: object  # of the last chunk, run for far more periods than a chunk is sized for
    log_capacity: int


@pytest.fixture(scope="module")
def trained():
    """2 CartPole seeds trained in-process by one compiled chunk 100 times longer than its log interval."""
    cfg = make_config(num_seeds=2, num_envs=2, train_frequency=2, total_steps=4000, learning_starts=500,
                      log_interval=20, epsilon_decay_steps=2000, buffer_size=2000, batch_size=32)
    rollout = build_rollout(cfg)
    state = jax.jit(rollout.init)(jax.random.PRNGKey(cfg.loop.seed))
    run = jax.jit(rollout.run_chunk)
    state, metrics = jax.block_until_ready(run(state, jnp.int32(100 * plan(cfg).log_periods), 500))
    rollout.env.close()  # only once the chunk, which steps the pool, has finished
    return Trained(cfg, state.agents.params, state, metrics, plan(cfg).episode_log_capacity)


def test_episodes_csv_holds_every_training_episode(two_runs):
    for run in two_runs:
        lines = (run / "episodes.csv").read_text().splitlines()
        assert lines[0] == EPISODES_HEADER
        rows = np.loadtxt(io.StringIO("\n".join(lines[1:])), delimiter=",", ndmin=2)
        last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        for seed, (episodes, mean_100) in enumerate(zip(last["episodes"], last["return_mean_100"])):
            seed_rows = rows[rows[:, 0] == seed]
            assert len(seed_rows) == episodes
            assert (np.diff(seed_rows[:, 1]) > 0).all()
            np.testing.assert_allclose(seed_rows[-100:, 2].mean(), mean_100, rtol=1e-5)
            np.testing.assert_array_equal(seed_rows[:, 2], seed_rows[:, 3])  # CartPole: reward 1 per step
            # each episode ends one auto-reset step plus its own length after the previous one
            np.testing.assert_array_equal(np.diff(seed_rows[:, 1]), seed_rows[1:, 3] + 1)


def test_episode_log_keeps_the_newest_when_a_chunk_runs_past_its_capacity(trained):
    state, metrics, capacity = trained.state, trained.metrics, trained.log_capacity
    counts = np.asarray(metrics.finished.count)
    np.testing.assert_array_equal(counts, state.stats.episodes)
    assert (counts > capacity).all()
    lines, lost = episode_rows(metrics.finished)
    assert lost == (counts - capacity).sum()
    rows = np.loadtxt(io.StringIO("".join(lines)), delimiter=",", ndmin=2)
    newest = rows[rows[:, 0] == 0][-min(capacity, 100):, 2]
    recent = np.roll(np.asarray(state.stats.recent_returns[0]), -int(state.stats.recent_position[0]))
    np.testing.assert_array_equal(newest, recent[-len(newest):])


def test_resumed_run_logs_the_same_episodes_as_an_uninterrupted_one(two_runs, tmp_path):
    run = tmp_path / "resumed"
    half = [*SHORT_RUN, "--num-seeds", "2", "--seed", "0", "--out", str(run)]
    half[half.index("--total-steps") + 1] = "2500"
    assert jaxdqn("train", *half).returncode == 0
    with open(run / "episodes.csv", "a") as file:  # as if killed after logging a chunk it never checkpointed
        file.write("0,4000,1,1\n1,2600,7,7\n0,26")
    result = jaxdqn("train", "--resume", str(run), "--total-steps", "5000", "--exact")
    assert result.returncode == 0, result.stderr

    def rows(path):  # by seed, then step (chunk boundaries change how seeds interleave in the file)
        table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        return table[np.lexsort((table[:, 1], table[:, 0]))]

    np.testing.assert_array_equal(rows(run / "episodes.csv"), rows(two_runs[0] / "episodes.csv"))


def test_plot_writes_a_png_from_two_real_runs(two_runs, tmp_path):
    out = tmp_path / "curves.png"
    result = jaxdqn("plot", *map(str, two_runs), "--out", str(out))
    assert result.returncode == 0, result.stderr
    image = iio.imread(out)
    assert image.shape[:2] == (900, 1500) and image.dtype == np.uint8
    assert image[..., :3].std() > 10  # not blank
    # each run's colour (matplotlib C0, C1) is drawn
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(image[..., :3].astype(int) - colour).sum(axis=-1) < 30).sum() > 500


def test_figure_has_return_loss_epsilon_and_kde_panels(two_runs):
    runs = [load_run(run) for run in two_runs]
    axes = {ax.get_title(): ax for ax in draw_runs(runs).axes}
    assert set(axes) == {"Episode return (dots) and 100-episode rolling mean", "TD loss (mean per log interval)",
                         "Exploration epsilon", "Kernel density of episode returns"}
    kde_lines = axes["Kernel density of episode returns"].get_lines()
    assert [line.get_label().split(" ")[0] for line in kde_lines] == ["uniform", "prioritized"]
    for line in kde_lines:  # a density: integrates to about 1 over the plotted range
        x, y = line.get_data()
        assert 0.9 < np.trapezoid(y, x) < 1.01
    assert "2 seeds (mean ± std of seeds)" in axes["Episode return (dots) and 100-episode rolling mean"] \
        .get_legend_handles_labels()[1][0]


def test_plot_reads_the_sectioned_config_and_marks_a_single_loss_point(two_runs):
    run = load_run(two_runs[0])
    assert run.solved_return == 475.0 and run.env_id == "CartPole-v1"  # from config.json's sections
    one_loss = run._replace(losses=np.where(np.arange(len(run.losses))[:, None] == 2, run.losses, np.nan))
    loss_axes = draw_runs([one_loss]).axes[1]
    assert [line.get_marker() for line in loss_axes.lines] == ["o"]  # a lone point, drawn


def test_rolling_mean_uses_partial_windows_at_the_start():
    np.testing.assert_allclose(rolling_mean(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])


def _corrupt_copy(run, tmp):
    """A copy of `run` whose config.json is cut short, as a crash while writing it would leave it."""
    import shutil

    copy = tmp / "corrupt"
    shutil.copytree(run, copy)
    (copy / "config.json").write_text("")
    return str(copy)


@pytest.mark.parametrize("make_args,message", [
    (lambda runs, tmp: [str(runs[0])], "the following arguments are required: --out"),
    (lambda runs, tmp: [str(runs[0]), "--out", str(tmp / "a.jpg")], "unsupported extension '.jpg'"),
    (lambda runs, tmp: [str(tmp / "missing"), "--out", str(tmp / "a.png")], "no such run directory"),
    (lambda runs, tmp: [str(tmp), "--out", str(tmp / "a.png")], "missing metrics.jsonl"),
    (lambda runs, tmp: [str(runs[0]), "--out", str(tmp / "no" / "a.png")], "does not exist"),
    (lambda runs, tmp: [str(runs[0]), "--window", "0", "--out", str(tmp / "a.png")], "--window: must be"),
    (lambda runs, tmp: [str(runs[0]), "--out", "/sys/a.png"], "--out: /sys is not writable"),  # even by root
    (lambda runs, tmp: [_corrupt_copy(runs[0], tmp), "--out", str(tmp / "a.png")],
     "config.json: not a readable JSON config (Expecting value: line 1 column 1 (char 0))"),
])
def test_plot_bad_input_is_one_line_and_writes_nothing(two_runs, tmp_path, make_args, message):
    result = jaxdqn("plot", *make_args(two_runs, tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("jaxdqn: error:") and message in result.stderr
    assert not list(tmp_path.rglob("a.*"))


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # imageio reads the mp4 through an ffmpeg subprocess
def test_video_has_one_frame_per_step_plus_the_reset_frame(trained, tmp_path):
    cfg, params = trained.cfg, trained.params
    plain = evaluate_policy(cfg, params, 3, seed=7)
    recorded = evaluate_policy(cfg, params, 3, seed=7, video_path=tmp_path / "episode.mp4")
    np.testing.assert_array_equal(recorded.returns, plain.returns)  # recording does not change the episodes
    np.testing.assert_array_equal(recorded.returns, recorded.lengths)  # CartPole: reward 1 per step
    assert recorded.returns.shape == (2, 3) and plain.video_frames is None
    frames = list(iio.imiter(tmp_path / "episode.mp4"))
    assert len(frames) == recorded.video_frames == recorded.lengths[0, 0] + 1
    assert frames[0].shape == (400, 600, 3)  # EnvPool's CartPole render, unresized


@pytest.mark.parametrize("env_id,shape", [("LunarLander-v3", (400, 600, 3))])
def test_gif_video_of_another_environment(tmp_path, env_id, shape):
    cfg = make_config(env_id=env_id, num_seeds=1)
    rollout = build_rollout(cfg)
    params = jax.jit(rollout.init)(jax.random.PRNGKey(0)).agents.params
    rollout.env.close()
    result = evaluate_policy(cfg, params, 1, seed=3, video_path=tmp_path / "episode.gif")
    frames = iio.imread(tmp_path / "episode.gif")
    # Pillow merges identical consecutive frames, so a gif holds at most reset + one per step
    assert 1 < len(frames) <= result.video_frames == result.lengths[0, 0] + 1
    assert frames.shape[1:3] == shape[:2]


@pytest.mark.parametrize("video,message", [
    ("episode.avi", "unsupported extension '.avi'"), ("nodir/episode.mp4", "does not exist")])
def test_evaluate_policy_refuses_a_bad_video_path_before_playing(trained, tmp_path, video, message):
    cfg, params = trained.cfg, trained.params
    with pytest.raises(EvaluationError, match=message):
        evaluate_policy(cfg, params, 1, seed=0, video_path=tmp_path / video)
    assert not list(tmp_path.rglob("episode*"))


@pytest.mark.parametrize("make_args,message", [
    (lambda run, tmp: [str(tmp / "missing")], "no such run directory"),
    (lambda run, tmp: [str(run), "--episodes", "0"], "--episodes: must be an integer > 0"),
    (lambda run, tmp: [str(run), "--episodes", "two"], "argument --episodes: not an integer: 'two'"),
    (lambda run, tmp: [str(run), "--epsilon", "1.5"], "--epsilon: must be in [0, 1]"),
    (lambda run, tmp: [str(run), "--video", str(tmp / "episode.avi")], "allowed: .mp4, .gif"),
    (lambda run, tmp: [str(run), "--video", str(tmp / "no" / "episode.mp4")], "does not exist"),
    (lambda run, tmp: [str(run), "--video", "/sys/episode.mp4"], "--video: /sys is not writable"),
    (lambda run, tmp: [str(tmp)], ""),  # a directory without a checkpoint
])
def test_evaluate_bad_input_is_one_line_and_changes_nothing(two_runs, tmp_path, make_args, message):
    run = two_runs[0]
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = jaxdqn("evaluate", *make_args(run, tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("jaxdqn: error:") and message in result.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert not list(tmp_path.rglob("episode*"))


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # imageio reads the mp4 through an ffmpeg subprocess
def test_evaluate_command_on_a_saved_run(two_runs, tmp_path):
    run = two_runs[0]
    video = tmp_path / "episode.mp4"
    result = jaxdqn("evaluate", str(run), "--video", str(video))
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    # default episodes and seed are those of the evaluation at the end of training
    for seed, mean in enumerate(summary["eval_return_mean"]):
        assert f"seed {seed}: return {mean:.2f} ± " in result.stdout
    assert "all seeds: return" in result.stdout
    frames = sum(1 for _ in iio.imiter(video))
    # at the environment's own rate: CartPole renders at 50 fps
    assert f"video: {video} ({frames} frames at 50 fps: reset + {frames - 1} steps" in result.stdout
    assert iio.immeta(video, plugin="FFMPEG")["fps"] == 50


def test_evaluate_policy_rejects_zero_episodes(trained):
    cfg, params = trained.cfg, trained.params
    with pytest.raises(EvaluationError, match="episodes: must be an integer > 0"):
        evaluate_policy(cfg, params, 0, seed=0)


def test_video_of_an_environment_without_render_is_refused_before_writing(tmp_path):
    cfg = make_config(preset="frozenlake", num_seeds=1)  # EnvPool's FrozenLake has no render
    rollout = build_rollout(cfg)
    params = jax.jit(rollout.init)(jax.random.PRNGKey(0)).agents.params
    rollout.env.close()
    with pytest.raises(EvaluationError, match="FrozenLake-v1 cannot be rendered"):
        evaluate_policy(cfg, params, 2, seed=0, video_path=tmp_path / "episode.gif")
    assert not list(tmp_path.iterdir())
    assert evaluate_policy(cfg, params, 2, seed=0).returns.shape == (1, 2)
