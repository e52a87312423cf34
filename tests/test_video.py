"""Video transition (the NCAtorch review §3.4): the moving-digits generator, the data sources and their errors,
a shrunk run trained through the CLI, its autoregressive evaluation and its truth-beside-prediction video."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import last_json, one_error_line, run_cli
from ncacli.errors import NcaError
from ncacli.io.video_data import bouncing_paths, load_videos, moving_digits, render_sequences

# 16×16 frames (7×7 digits), 24 sequences of 12 frames (2 held out), 4–6 steps a frame
SHRUNK = ["--size", "16", "--batch", "4", "--set", "steps_min=4", "--set", "steps_max=6", "--set", "pool_size=8",
          "--set", "hidden=32", "--set", "task.videos=24", "--set", "task.length=12",
          "--set", "checkpoint_every=100", "--seed", "1", "--quiet", "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    """A shrunk video model trained through `nca train --data moving-digits` (the video preset, implied)."""
    from ncacli.cli import main

    out = tmp_path_factory.mktemp("video") / "run"
    assert main(["train", "--data", "moving-digits", "--iters", "40", "--out", str(out), *SHRUNK]) == 0
    return out


# -- the generator -------------------------------------------------------------------------------------------


def test_moving_digits_are_repeatable_and_split():
    a = moving_digits(20, 10, 32, 14, digits=2, test_fraction=0.25, seed=3)
    b = moving_digits(20, 10, 32, 14, digits=2, test_fraction=0.25, seed=3)
    c = moving_digits(20, 10, 32, 14, digits=2, test_fraction=0.25, seed=4)
    assert a.videos.shape == (20, 10, 32, 14 + 18) and a.videos.dtype == torch.uint8
    assert torch.equal(a.videos, b.videos) and not torch.equal(a.videos, c.videos)
    assert a.test.tolist() == [15, 16, 17, 18, 19] and a.train.tolist() == list(range(15))
    assert a.length == 10 and a.grid == (32, 32)
    # each sequence draws from a stream of its own: more sequences leave the first ones of each split as they were
    more = moving_digits(24, 10, 32, 14, digits=2, test_fraction=0.25, seed=3)
    assert len(more.test) == 6 and torch.equal(more.videos[more.test[:5]], a.videos[a.test])
    assert torch.equal(more.videos[:15], a.videos[:15])
    # frames move: consecutive frames differ, and every frame has ink
    assert (a.videos[:, 1:].float() - a.videos[:, :-1].float()).abs().amax((2, 3)).min() > 0
    assert a.videos.amax((2, 3)).min() > 100


def test_digits_bounce_inside_the_frame():
    rng = np.random.default_rng(0)
    limit = 18.0
    paths = bouncing_paths(rng.uniform(0, limit, (50, 2, 2)), rng.uniform(0, 2 * np.pi, (50, 2)), 40, limit)
    assert paths.shape == (50, 2, 40, 2) and paths.min() >= 0.0 and paths.max() <= limit
    steps = np.diff(paths, axis=2)
    speed = np.linalg.norm(steps, axis=-1)
    # 0.1 of the free span per frame, in a straight line but where a wall reflects it (then shorter)
    assert speed.max() == pytest.approx(0.1 * limit, rel=1e-9)
    flips = (np.sign(steps[:, :, 1:]) != np.sign(steps[:, :, :-1])).any(-1).sum()
    assert flips > 50  # walls are met: 40 frames cross an 18-cell span 4 times
    # one digit on its own is never cut by the edge: every frame holds all of its ink
    digit = np.zeros((1, 5, 5), np.float32)
    digit[0, 1:4, 1:4] = 1.0
    paths = bouncing_paths(rng.uniform(0, 11, (3, 1, 2)), rng.uniform(0, 2 * np.pi, (3, 1)), 40, 11.0)
    frames = render_sequences(digit, paths, np.zeros((3, 1), np.int64), 16)
    assert frames.shape == (3, 40, 16, 16)
    assert (frames.reshape(3, 40, -1).astype(int).sum(-1) == 9 * 255).all()


def test_two_digits_combine_by_their_maximum():
    digit = np.full((2, 4, 4), 0.5, np.float32)
    digit[1] = 1.0
    paths = np.zeros((1, 2, 1, 2))  # both at the top-left corner
    frame = render_sequences(digit, paths, np.array([[0, 1]]), 8)[0, 0]
    assert (frame[:4, :4] == 255).all() and frame[4:].max() == 0 and frame[:, 4:].max() == 0


# -- data from files -----------------------------------------------------------------------------------------


def test_a_folder_of_npy_videos(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "ok").mkdir()
    np.save(tmp_path / "ok" / "a.npy", rng.integers(0, 256, (6, 8, 20, 20), dtype=np.uint8))
    np.save(tmp_path / "ok" / "b.npy", rng.integers(0, 256, (4, 8, 20, 20), dtype=np.uint8))
    v = load_videos(str(tmp_path / "ok"), 10, test_fraction=0.2, split_seed=0)
    assert v.videos.shape == (10, 8, 10, 10) and v.videos.dtype == torch.uint8
    assert len(v.test) == 2 and sorted(v.train.tolist() + v.test.tolist()) == list(range(10))
    same = load_videos(str(tmp_path / "ok"), 20)
    assert torch.equal(same.videos[:6], torch.from_numpy(np.load(tmp_path / "ok" / "a.npy")))

    def refused(name: str, array, *needles: str) -> None:
        folder = tmp_path / name
        folder.mkdir()
        for i, a in enumerate(array):
            np.save(folder / f"{i}.npy", a)
        with pytest.raises(NcaError) as info:
            load_videos(str(folder), 10)
        for needle in needles:
            assert needle in str(info.value), (needle, str(info.value))
        assert "\n" not in str(info.value)

    refused("flat", [np.zeros((8, 20, 20), np.uint8)], "0.npy", "(N, T, H, W) uint8", "[8, 20, 20]")
    refused("float", [np.zeros((2, 8, 20, 20), np.float32)], "float32", "(N, T, H, W) uint8")
    refused("mixed", [np.zeros((2, 8, 20, 20), np.uint8), np.zeros((2, 9, 20, 20), np.uint8)], "1.npy", "[9, 20, 20]")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NcaError, match="no .npy files"):
        load_videos(str(tmp_path / "empty"), 10)
    with pytest.raises(NcaError, match="neither moving-digits, moving-mnist nor a folder"):
        load_videos(str(tmp_path / "missing"), 10)


def test_moving_mnist_offline_and_from_its_file(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("NCA_DATA", str(tmp_path / "empty"))
    code, _, err = run_cli(capsys, "train", "--data", "moving-mnist", "--out", tmp_path / "m", *SHRUNK)
    one_error_line(err, "moving-mnist", str(tmp_path / "empty"), "MovingMNIST/mnist_test_seq.npy", "NCA_DATA",
                   "task.data_root", "--data DIR")  # fmt: skip
    assert code == 1 and not (tmp_path / "m").exists()
    # torchvision's file as it keeps it, time first: (T, N, 64, 64)
    (tmp_path / "cache" / "MovingMNIST").mkdir(parents=True)
    frames = np.random.default_rng(0).integers(0, 256, (20, 10, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "cache" / "MovingMNIST" / "mnist_test_seq.npy", frames)
    monkeypatch.setenv("NCA_DATA", str(tmp_path / "cache"))
    v = load_videos("moving-mnist", 64, test_fraction=0.2)
    assert v.videos.shape == (10, 20, 64, 64) and torch.equal(v.videos[3], torch.from_numpy(frames[:, 3]))
    assert v.source == "moving-mnist" and len(v.test) == 2
    v = load_videos(str(tmp_path / "cache"), 32)  # --data DIR: a torchvision root
    assert v.videos.shape == (10, 20, 32, 32)


def test_bad_options_are_one_line(capsys, tmp_path):
    for flags, needle in (
        (["--set", "task.k=16"], "task.k (16)"),
        (["--set", "task.digit_size=16"], "digit_size (16) must be below size (16)"),
        (["--set", "task.length=5"], "length ≥ k + 2 (6)"),
        (["--set", "task.frames=3"], "frames"),
    ):
        code, _, err = run_cli(capsys, "train", "--data", "moving-digits", "--out", tmp_path / "x", *SHRUNK, *flags)
        one_error_line(err, needle)
        assert code == 2 and not (tmp_path / "x").exists()


# -- a trained model -----------------------------------------------------------------------------------------


def test_the_run_learns_and_saves_its_split(video_run):
    import ncacli.api as nca

    assert len((video_run / "metrics.jsonl").read_text().splitlines()) == 40
    model = nca.load(video_run / "model.safetensors")
    # training lowered the loss: the untrained model (its output layer zero) leaves a state as it is, so its loss
    # on a window is the window's own MSE to the next; the trained one's transition comes closer, on 88 windows
    # (the pool's loss is no measure of this: its later samples are the model's own drifting predictions)
    task = model.task
    video = task.load_data().train.repeat_interleave(4)
    labels = torch.stack([video, torch.arange(4).repeat(22) * 2], 1)
    x = task.states(labels[:, 0], labels[:, 1])
    with torch.no_grad():
        after = task.loss(model.nca.rollout(x, task.transition_steps(), torch.Generator().manual_seed(0)), labels)
    assert float(after.mean()) < 0.85 * float(task.loss(x, labels).mean())
    assert model.spec.task.name == "video" and not model.spec.model.alive_masking
    assert model.spec.task.channels == {"frames": [0, 1, 2, 3], "hidden": list(range(4, 16))}
    assert model.task.test_index().tolist() == [22, 23] and model.task.transition_steps() == 5
    assert model.provenance["preset"] == "video"
    # the model starts from the first 4 frames of held-out sequences, hidden channels zero
    x = model.seed(3)
    data = model.task.load_data()
    assert torch.equal(x[:, :4], data.window(torch.tensor([22, 23, 22]), torch.zeros(3, dtype=torch.long), 4))
    assert x[:, 4:].abs().max() == 0


def test_evaluate_reports_each_predicted_frame_and_the_baseline(capsys, video_run, tmp_path):
    import ncacli.api as nca

    code, out, err = run_cli(capsys, "evaluate", video_run, "--frames", "6", "--plot", tmp_path / "curve.png", "--json")
    assert code == 0, err
    doc = last_json(out)
    assert doc["task"] == "video" and doc["protocol"]["frames"] == 6 and doc["protocol"]["k"] == 4
    assert doc["protocol"]["metrics"] == ["mse", "ssim"] and doc["protocol"]["trials"] == 2
    assert [r["frame"] for r in doc["per_frame"]] == [5, 6, 7, 8, 9, 10]
    assert "copy-last MSE" in err and "NCA SSIM" in err
    # the baseline, recomputed here: the last input frame (frame 4) against each later true frame
    model = nca.load(video_run / "model.safetensors")
    data, test = model.task.load_data(), model.task.test_index()
    frames = data.window(test, torch.zeros_like(test), 10)  # (2, 10, H, W)
    for row in doc["per_frame"]:
        mse = ((frames[:, 3] - frames[:, row["frame"] - 1]) ** 2).mean((1, 2))
        # the same sums in another order: float32 rounding apart
        assert row["baseline_mse"]["mean"] == pytest.approx(float(mse.mean()), rel=1e-5)
        assert 0 <= row["mse"]["mean"] and -1 <= row["ssim"]["mean"] <= 1
    # the model's own predictions, recomputed: the same arithmetic, the same numbers
    g = torch.Generator().manual_seed(0)
    predicted, _ = model.task.predict(model.nca, model.seed(2), 6, g)
    mse = ((predicted - frames[:, 4:]) ** 2).mean((2, 3)).mean(0)
    assert [r["mse"]["mean"] for r in doc["per_frame"]] == pytest.approx(mse.tolist(), rel=1e-6)
    summary = doc["metrics"]["mse"]
    assert summary["nca"] == pytest.approx(float(mse.mean()), rel=1e-6) and 0 < summary["black_frame"]
    assert Image.open(tmp_path / "curve.png").size[0] > 400
    # the growing protocol's options are the CLI's defaults here; those that cannot apply are refused
    for flags, needle in ((["--frames", "9"], "1 to 8 can be predicted"), (["--perturb", "damage"], "takes none"),
                          (["--metric", "lpips"], "mse, psnr, ssim")):  # fmt: skip
        code, _, err = run_cli(capsys, "evaluate", video_run, *flags)
        one_error_line(err, needle)
        assert code == 2


def test_render_shows_truth_beside_prediction(capsys, video_run, tmp_path):
    import ncacli.api as nca

    gif = tmp_path / "pred.gif"
    code, out, err = run_cli(capsys, "render", video_run / "model.safetensors", gif, "--frames", "5", "--input", "#1",
                             "--scale", "2", "--json")  # fmt: skip
    assert code == 0, err
    summary = last_json(out)
    assert summary["frames"] == 6 and summary["predicted"] == 5 and summary["sequence"] == {"test": 1, "index": 23}
    model = nca.load(video_run / "model.safetensors")
    truth = model.task.load_data().window(torch.tensor([23]), torch.tensor([3]), 6)[0]  # frames 4 … 9
    with Image.open(gif) as im:
        assert im.n_frames == 6 and im.size == (2 * 32 + 2, 32 + 14)
        for i in range(6):
            im.seek(i)
            pixels = np.asarray(im.convert("RGB"))[:32, :32, 0].astype(int)
            expected = (truth[i] * 255 + 0.5).byte().numpy().repeat(2, 0).repeat(2, 1).astype(int)
            assert np.abs(pixels - expected).max() <= 8, i  # the GIF's palette rounds a grey a little
            if i == 0:  # the last input frame, on both sides
                right = np.asarray(im.convert("RGB"))[:32, 34:, 0].astype(int)
                assert np.abs(right - pixels).max() <= 8
    for flags, needle in ((["--input", "#2"], "#0 … #1"), (["--damage-at", "3"], "--damage-at is for growing"),
                          (["--frames", "9"], "1 to 8 can be predicted")):  # fmt: skip
        code, _, err = run_cli(capsys, "render", video_run / "model.safetensors", tmp_path / "no.gif", *flags)
        one_error_line(err, needle)
        assert code == 2 and not (tmp_path / "no.gif").exists()
    code, _, err = run_cli(capsys, "grow", video_run / "model.safetensors", "-o", tmp_path / "no.png")
    one_error_line(err, "nca render MODEL out.gif --frames N", "nca evaluate MODEL --frames N")
    code, _, err = run_cli(capsys, "render", video_run / "model.safetensors", tmp_path / "no.html")
    one_error_line(err, "the page does not show 'video' models")


def test_the_data_flag_names_the_preset(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--data", "moving-digits", "--iters", "1", "--out", tmp_path / "r", *SHRUNK)
    assert code == 0 and "preset: video (for --task video" in err.replace("\n", " ")


def test_frames_are_for_video_models(capsys, tiny_model, tmp_path):
    code, _, err = run_cli(capsys, "evaluate", tiny_model, "--frames", "3", "--metric", "mse", "--trials", "1")
    one_error_line(err, "--frames counts the frames a video model predicts")
    assert code == 2
    code, _, err = run_cli(capsys, "render", tiny_model, tmp_path / "x.gif", "--frames", "3")
    one_error_line(err, "--frames counts the frames a video model predicts")
    assert code == 2 and not (tmp_path / "x.gif").exists()
