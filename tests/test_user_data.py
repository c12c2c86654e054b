"""Users' own data (--data / robustmix.data.load): image folders and .npz/.pt files, their splits, their mistakes."""

import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

import robustmix.data.user as user
from robustmix.cli import main
from robustmix.data import load
from robustmix.errors import ConfigError, DataNotFoundError, InputError

PIL = pytest.importorskip("PIL.Image")


def write_folder(root, classes=("cat", "dog", "emu"), per_class=5, shape=(3, 32, 32), seed=0):
    """An ImageFolder tree of PNGs; returns {relative path: (uint8 CHW array, class name)}."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    out = {}
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (h, w, c) if c == 3 else (h, w), dtype=np.uint8)
            PIL.fromarray(img).save(root / name / f"{i:03d}.png")
            out[f"{name}/{i:03d}.png"] = (img.transpose(2, 0, 1) if c == 3 else img[None], name)
    return out


def as_pixels(x):
    return (x * 255).round().to(torch.uint8).numpy()


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_image_folder_is_read_lazily_in_class_order(tmp_path, shape, monkeypatch):
    written = write_folder(tmp_path / "imgs", classes=("dog", "cat", "emu"), shape=shape)
    calls = []
    real = user.decode_image
    monkeypatch.setattr(user, "decode_image", lambda *a: calls.append(a[0]) or real(*a))
    data = load(tmp_path / "imgs", split="test")
    assert calls == [] and data.shape == shape and data.classes == ("cat", "dog", "emu")
    assert len(data) == 12 and len(load(tmp_path / "imgs", split="val")) == 3   # a fifth of 15 carved out
    x, y = data.take([0, 5])
    assert len(calls) == 2 and x.shape == (2, *shape) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    items = data.describe([0, 5])["splits"]["test"]["items"]
    for k, name in enumerate(items):
        pixels, cls = written[name]
        np.testing.assert_array_equal(as_pixels(x[k]), pixels)
        assert int(y[k]) == data.classes.index(cls)
    xi, yi = data[5]
    assert torch.equal(xi, x[1]) and yi == int(y[1])
    assert len(set(data.labels[:6].tolist())) > 1   # a fixed shuffled order: the first few mix the classes


def test_npz_uint8_nhwc_and_pt_float_nchw(tmp_path):
    rng = np.random.default_rng(1)
    x8 = rng.integers(0, 256, (30, 28, 28, 1), dtype=np.uint8)
    y = rng.integers(0, 10, 30)
    np.savez(tmp_path / "d.npz", x=x8, y=y)
    data = load(tmp_path / "d.npz")
    assert data.shape == (1, 28, 28) and data.num_classes == int(y.max()) + 1 and data.classes == ()
    x, yt = data.take()
    rows = data.describe()["splits"]["test"]["items"]
    np.testing.assert_array_equal(as_pixels(x), x8[rows].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(yt.numpy(), y[rows])

    xf = torch.rand(12, 3, 16, 16)
    yf = torch.arange(12) % 4
    torch.save({"x": xf, "y": yf}, tmp_path / "d.pt")
    data = load(tmp_path / "d.pt", split="test")
    x, yt = data.take()
    rows = data.describe()["splits"]["test"]["items"]
    assert data.shape == (3, 16, 16) and torch.equal(x, xf[rows]) and torch.equal(yt, yf[rows])


@pytest.mark.parametrize("kind", ["folder", "npz"])
def test_val_and_test_never_overlap(tmp_path, kind):
    if kind == "folder":
        write_folder(tmp_path / "d", per_class=10, shape=(1, 8, 8))
        path = tmp_path / "d"
    else:
        np.savez(tmp_path / "d.npz", x=np.zeros((40, 1, 8, 8), np.uint8), y=np.arange(40) % 3)
        path = tmp_path / "d.npz"
    test, val = (load(path, split=s).describe()["splits"][s]["items"] for s in ("test", "val"))
    again = load(path, split="val").describe()["splits"]["val"]["items"]
    total = 30 if kind == "folder" else 40
    assert val == again and len(val) == total // 5 and not set(val) & set(test) and len(set(val) | set(test)) == total
    with pytest.raises(DataNotFoundError, match="no train split"):
        load(path, split="train")


def test_split_folders_carve_val_from_train_as_the_named_sets(tmp_path):
    write_folder(tmp_path / "d" / "train", classes=("a", "b"), per_class=10, shape=(1, 8, 8))
    write_folder(tmp_path / "d" / "test", classes=("a", "c"), per_class=2, shape=(1, 8, 8), seed=1)
    train, val, test = (load(tmp_path / "d", split=s) for s in ("train", "val", "test"))
    assert train.classes == val.classes == test.classes == ("a", "b", "c")   # one index per name across splits
    assert len(train) == 16 and len(val) == 4 and len(test) == 4
    names = [set(d.describe()["splits"][d.split]["items"]) for d in (train, val, test)]
    assert not names[0] & names[1] and all(n.startswith("test/") for n in names[2])
    assert sorted(test.labels.tolist()) == [0, 0, 2, 2]


def test_missing_pillow_names_the_install(tmp_path, monkeypatch):
    write_folder(tmp_path / "d", per_class=1, shape=(1, 8, 8))
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ConfigError, match="pip install pillow"):
        load(tmp_path / "d")


def test_digest_changes_with_the_data(tmp_path):
    write_folder(tmp_path / "d", per_class=2, shape=(1, 8, 8))
    before = user.digest(tmp_path / "d")
    assert user.digest(tmp_path / "d") == before
    PIL.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "d" / "cat" / "new.png")
    assert user.digest(tmp_path / "d") != before


def rgb_model():
    """A 3-channel model (for 1-channel data)."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(10))


def _bad(tmp_path, case):
    """(path, extra argv) of one mistake, written into tmp_path."""
    rng = np.random.default_rng(0)
    if case == "empty folder":
        (tmp_path / "d").mkdir()
        return tmp_path / "d", []
    if case == "mixed sizes":   # 3 images: too few for a validation part, all are test images
        write_folder(tmp_path / "d", per_class=1, shape=(1, 28, 28))
        PIL.fromarray(np.zeros((20, 28), np.uint8)).save(tmp_path / "d" / "dog" / "000.png")
        return tmp_path / "d", ["-n", "3"]
    if case == "corrupt image":
        write_folder(tmp_path / "d", per_class=1, shape=(1, 28, 28))
        (tmp_path / "d" / "emu" / "000.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        return tmp_path / "d", ["-n", "3"]
    if case == "labels outside the model's classes":
        np.savez(tmp_path / "d.npz", x=np.zeros((10, 28, 28), np.uint8), y=np.arange(10) + 2)
        return tmp_path / "d.npz", ["-n", "2"]
    if case == "channels (3-channel data, 1-channel model)":
        write_folder(tmp_path / "d", per_class=2, shape=(3, 28, 28))
        return tmp_path / "d", ["-n", "2"]
    if case == "channels (1-channel data, 3-channel model)":
        write_folder(tmp_path / "d", per_class=2, shape=(1, 28, 28))
        return tmp_path / "d", ["-n", "2", "--model", "tests.test_user_data:rgb_model"]
    if case == "x and y of different lengths":
        torch.save({"x": torch.rand(10, 1, 28, 28), "y": torch.zeros(9, dtype=torch.long)}, tmp_path / "d.pt")
        return tmp_path / "d.pt", []
    if case == "NaN in a float file":
        x = rng.random((10, 1, 28, 28)).astype(np.float32)
        x[3, 0, 1, 1] = np.nan
        np.savez(tmp_path / "d.npz", x=x, y=np.zeros(10, int))
        return tmp_path / "d.npz", []
    if case == "floats outside [0, 1]":
        np.savez(tmp_path / "d.npz", x=rng.random((10, 28, 28, 1)).astype(np.float32) * 255, y=np.zeros(10, int))
        return tmp_path / "d.npz", []
    if case == "missing path":
        return tmp_path / "nowhere", []
    if case == "empty class folder":
        write_folder(tmp_path / "d", per_class=2, shape=(1, 28, 28))
        (tmp_path / "d" / "fox").mkdir()
        return tmp_path / "d", []
    if case == "a split the data does not have":
        write_folder(tmp_path / "d", per_class=2, shape=(1, 28, 28))
        return tmp_path / "d", ["--split", "train"]
    if case == "--save-adversarial":
        write_folder(tmp_path / "d", per_class=2, shape=(1, 28, 28))
        return tmp_path / "d", ["--save-adversarial", str(tmp_path / "adv.pt")]
    raise AssertionError(case)


BAD = {
    "empty folder": "holds no class sub-folders",
    "mixed sizes": "images of mixed sizes",
    "corrupt image": "emu/000.png is not a readable image",
    "labels outside the model's classes": "labels outside the model's classes",
    "channels (3-channel data, 1-channel model)": "takes 1-channel images but",
    "channels (1-channel data, 3-channel model)": "takes 3-channel images but",
    "x and y of different lengths": "x holds 10 images but y holds 9 labels",
    "NaN in a float file": "NaN or infinite values (the first in image 3)",
    "floats outside [0, 1]": "divide by 255",
    "missing path": "does not exist",
    "empty class folder": "fox holds no images",
    "a split the data does not have": "has no train split (it has test)",
    "--save-adversarial": "--save-adversarial takes a named --dataset",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_data_is_one_line_and_exit_2_before_any_work(case, tmp_path, capsys):
    path, extra = _bad(tmp_path, case)
    out = tmp_path / "out"
    argv = ["evaluate", "--data", str(path), "-n", "4", "--attacks", "apgd-ce@h", "--steps", "1", *extra]
    if "-n" in extra:
        argv.remove("-n"), argv.remove("4")
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert BAD[case] in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (out / "records.jsonl").exists()


def test_evaluate_on_a_grayscale_folder_with_the_zoo_then_report(tmp_path, capsys):
    write_folder(tmp_path / "imgs", classes=tuple(f"{k:02d}-class" for k in range(10)), per_class=2,
                 shape=(1, 28, 28))
    out = tmp_path / "eval"
    assert main(["evaluate", "--data", str(tmp_path / "imgs"), "--attacks", "apgd-ce@h", "--steps", "2", "-n", "4",
                 "--no-diagnostics", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    data = summary["data"]
    assert summary["n"] == 4 and data["classes"][3] == "03-class" and data["shape"] == [1, 28, 28]
    assert len(data["splits"]["test"]["items"]) == 4 and sum(data["splits"]["test"]["class_counts"]) == 4
    header = json.loads((out / "records.jsonl").read_text().splitlines()[0])
    assert header["settings"]["data_sha256"] == user.digest(tmp_path / "imgs")
    capsys.readouterr()
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "## Data" in md and "| 9 | 09-class |" in md and "fixed shuffled order" in md


def test_sweep_on_an_npz_then_report(tmp_path, capsys):
    from robustmix.data import load_dataset

    x, y = load_dataset("fashion-mnist", "test")
    np.savez(tmp_path / "fm.npz", x=(x[:20].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8),
             y=y[:20].numpy())
    out = tmp_path / "sweep"
    assert main(["sweep", "--data", str(tmp_path / "fm.npz"), "-n", "4", "--alphas", "0", "1", "--steps", "1",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["data"]["splits"]["test"]["items"]
    assert summary["n"] == 4 and summary["data"]["format"] == ".npz" and len(rows) == 4
    val = load(tmp_path / "fm.npz", split="val").describe()["splits"]["val"]["items"]
    assert not set(rows) & set(val)
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert "## Data" in (out / "report.md").read_text() and "report:" in capsys.readouterr().out


def test_library_load_refuses_files_it_cannot_read(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        load(tmp_path / "d.npz")
    np.savez(tmp_path / "o.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.eye(4, dtype=int))
    with pytest.raises(InputError, match="one-hot"):
        load(tmp_path / "o.npz")
    (tmp_path / "a.csv").write_text("1,2")
    with pytest.raises(ConfigError, match="a .csv file"):
        load(tmp_path / "a.csv")
