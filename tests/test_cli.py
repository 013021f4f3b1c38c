"""The shared command line: presets, type-checked overrides, one-line errors, --help."""

from __future__ import annotations

import subprocess
import sys

import ml_collections
import pytest

from aejax import cli


def _presets():
  def demo():
    return ml_collections.ConfigDict(
      {
        "data": {"batch_size": 8, "size": (64, 64), "path": ""},
        "optim": {"lr": 1e-3, "name": "adam", "grad_clip": None},
        "train": {"num_steps": 100, "verbose": True},
      }
    )

  def smoke():
    c = demo()
    c.train.num_steps = 2
    return c

  return {"demo": demo, "smoke": smoke}


def _run(argv):
  seen = {}

  def train(config, workdir, args):
    """Trains."""
    seen.update(config=config, workdir=workdir, args=args)
    return None

  def extract(config, workdir, args):
    """Extracts things."""
    seen.update(config=config, mode="extract", args=args)
    raise FileNotFoundError(f"{args.video}: no such video")

  presets = _presets()
  cli.run(
    presets["demo"],
    modes={"train": train, "extract": extract},
    presets=presets,
    default_preset="demo",
    flags={"video": "input video", "side_by_side": ("show both", False)},
    argv=argv + ["--compilation_cache", ""],
  )
  return seen


def test_overrides_are_typed_and_applied_to_the_preset(tmp_path):
  seen = _run(
    [
      "--preset",
      "smoke",
      "--workdir",
      str(tmp_path),
      "--config.data.batch_size=4",
      "--config.optim.lr",
      "3e-4",
      "--config.data.size=32,48",
      "--config.train.verbose=false",
      "--config.optim.grad_clip=1.5",
      "--config.data.path=/x y",
    ]
  )
  c = seen["config"]
  assert c.train.num_steps == 2  # from the smoke preset
  assert c.data.batch_size == 4 and isinstance(c.data.batch_size, int)
  assert c.optim.lr == pytest.approx(3e-4) and c.data.size == (32, 48)
  assert c.train.verbose is False and c.optim.grad_clip == 1.5 and c.data.path == "/x y"
  assert seen["workdir"] == tmp_path


def test_default_workdir_names_experiment_and_preset():
  seen = _run([])
  assert seen["workdir"].parts[-2:] == ("test_cli", "demo")
  assert seen["config"].train.num_steps == 100


@pytest.mark.parametrize(
  "argv, match",
  [
    (["--config.data.bach_size=4"], "unknown config key data.bach_size (did you mean data.batch_size?)"),
    (["--config.data.batch_size=four"], "cannot read 'four' as int"),
    (["--config.train.verbose=maybe"], "cannot read 'maybe' as bool"),
    (["--bogus"], "unrecognised argument '--bogus'"),
  ],
)
def test_bad_overrides_are_one_line_errors(argv, match):
  with pytest.raises(cli.UsageError) as err:
    _run(argv)
  assert match in str(err.value) and "\n" not in str(err.value)


def test_mode_flags_reach_the_mode_and_errors_propagate_in_tests():
  with pytest.raises(FileNotFoundError, match="in.mp4: no such video"):
    _run(["extract", "--video", "in.mp4", "--side_by_side"])


def test_help_and_one_line_error_from_a_real_process(tmp_path):
  code = (
    "import ml_collections\n"
    "from aejax import cli\n"
    "def get_config():\n"
    "  return ml_collections.ConfigDict({'data': {'batch_size': 8}})\n"
    "def train(config, workdir, args):\n"
    "  '''Trains the model.'''\n"
    "  raise ValueError(f'{args.video}: not a video file')\n"
    "cli.run(get_config, modes={'train': train, 'eval': train}, flags={'video': 'input video'},\n"
    "        doc='Demo experiment.')\n"
  )
  script = tmp_path / "exp.py"
  script.write_text(code)
  out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True)
  assert out.returncode == 0
  for text in (
    "Demo experiment.",
    "train",
    "eval",
    "Trains the model.",
    "data.batch_size = 8",
    "--workdir",
    "--video",
  ):
    assert text in out.stdout, text
  bad = subprocess.run(
    [
      sys.executable,
      str(script),
      "--video",
      "clip.bin",
      "--workdir",
      str(tmp_path / "w"),
      "--compilation_cache",
      "",
    ],
    capture_output=True,
    text=True,
  )
  assert bad.returncode == 1
  assert bad.stderr.strip() == "error: clip.bin: not a video file"
  typo = subprocess.run(
    [sys.executable, str(script), "--config.data.batchsize=3"], capture_output=True, text=True
  )
  assert typo.returncode == 2 and typo.stderr.strip().startswith("error: unknown config key")


@pytest.mark.parametrize(
  "name,key",
  [
    ("siammae", "data.root"),
    ("keyframes", "data.root"),
    ("oval", "data.root"),
    ("vae", "data.root"),
    ("compressed_vision", "data.digits"),
  ],
)
def test_paper_preset_without_its_dataset_is_a_one_line_error(tmp_path, monkeypatch, name, key):
  """`train --preset paper` never falls back to the synthetic data silently (all five)."""
  import importlib

  monkeypatch.setenv("AEJAX_MNIST", "")  # the 3D AE would otherwise find ../shared/realdata's MNIST
  exp = importlib.import_module(f"experiments.{name}")
  with pytest.raises(cli.UsageError, match=rf"--config\.{key}=PATH"):
    exp.main(["train", "--preset", "paper", "--workdir", str(tmp_path / "w")])
  assert not (tmp_path / "w").exists()  # nothing started


def test_overwrite_flag_experiment_name_and_workdir_file(tmp_path):
  """`--overwrite` reaches the mode, `current_experiment()` names the module while the mode runs,
  and a --workdir that is a file stops before the mode."""
  seen = {}

  def train(config, workdir, args):
    """Trains."""
    seen.update(overwrite=args.overwrite, experiment=cli.current_experiment())

  def run(argv):
    cli.run(_presets()["demo"], modes={"train": train}, argv=argv + ["--compilation_cache", ""])

  run(["--workdir", str(tmp_path / "w")])
  assert seen == {"overwrite": False, "experiment": "test_cli"} and cli.current_experiment() is None
  run(["--workdir", str(tmp_path / "w"), "--overwrite"])
  assert seen["overwrite"] is True
  f = tmp_path / "file"
  f.write_text("x")
  seen.clear()
  with pytest.raises(ValueError, match="the workdir is a file, not a folder") as err:
    run(["--workdir", str(f)])
  assert not seen and str(f) in str(err.value)


def test_one_line_messages():
  assert cli.one_line(KeyError("color_space")) == "missing key 'color_space' (KeyError)"
  assert cli.one_line(ValueError("a\nb")) == "a b"
  assert cli.one_line(OSError()) == "OSError"


def test_train_on_a_workdir_locked_by_a_live_process_stops_before_the_mode(tmp_path):
  import json
  import socket

  from aejax.io import WorkdirLocked

  ran = []

  def train(config, workdir, args):
    """Trains."""
    ran.append(1)

  (tmp_path / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": 1, "since": "x"}))
  with pytest.raises(WorkdirLocked, match=rf"{tmp_path}: in use by process 1 on "):
    cli.run(
      _presets()["demo"], modes={"train": train}, argv=["--workdir", str(tmp_path), "--compilation_cache", ""]
    )
  assert not ran
