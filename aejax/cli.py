"""The shared command line of every experiment.

`python -m experiments.<name> [mode] [--preset P] [--workdir DIR] [--config.section.key=value ...]`

Each experiment calls `run(get_config, modes=..., presets=...)` from its `main()`. Overrides are
type-checked against the chosen preset; a misspelt key or a bad value is a one-line error, as is
any `ValueError`/`OSError` a mode raises (pass `--debug` for the traceback). A `--workdir` that is
a file is refused before the mode starts. Modes that write files check them with
`aejax.io.check_output(path, inputs=[...], overwrite=args.overwrite)`: an output that is one of the
inputs, or an existing one without `--overwrite`, is a one-line error. While a mode runs,
`current_experiment()` names the experiment (`fit` records it in `run.json`, and `restore_for_eval`
refuses another experiment's checkpoint).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path


class UsageError(ValueError):
  """A bad command line (one-line message)."""


_CURRENT: dict = {"experiment": None}


def current_experiment() -> str | None:
  """The module name of the experiment whose mode is running under `run` (None outside it)."""
  return _CURRENT["experiment"]


def _flatten(cfg, prefix="") -> dict:
  out = {}
  for k, v in cfg.items():
    key = f"{prefix}{k}"
    if hasattr(v, "items") and not isinstance(v, (str, bytes)):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def _literal(raw: str):
  try:
    return ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    return raw


def _parse_value(raw: str, current, key: str):
  """Parses `raw` into the type of the current value of `key` (`none` gives None)."""
  text = raw.strip()
  if text.lower() == "none":
    return None
  try:
    if isinstance(current, bool):
      if text.lower() in ("1", "true", "yes", "on"):
        return True
      if text.lower() in ("0", "false", "no", "off"):
        return False
      raise ValueError(text)
    if isinstance(current, int):
      return int(text)
    if isinstance(current, float):
      return float(text)
    if isinstance(current, str):
      return raw
    if isinstance(current, (tuple, list)):
      val = (
        ast.literal_eval(text)
        if text[:1] in "(["
        else [_literal(x.strip()) for x in text.split(",") if x.strip()]
      )
      val = list(val) if isinstance(val, (tuple, list)) else [val]
      kinds = {type(x) for x in current}
      if kinds and kinds <= {int, float}:  # a numeric tuple stays numeric
        num = float if float in kinds else int
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in val):
          raise ValueError(text)
        if num is int and any(not float(x).is_integer() for x in val):
          raise ValueError(text)
        val = [num(x) for x in val]
      return type(current)(val)
    return _literal(text)
  except (ValueError, SyntaxError, TypeError):
    raise UsageError(f"--config.{key}: cannot read {raw!r} as {type(current).__name__}") from None


def apply_overrides(config, overrides: dict[str, str]):
  """Applies `{"section.key": "value"}` overrides to a ConfigDict in place (type-checked)."""
  known = _flatten(config)
  for key, raw in overrides.items():
    if key not in known:
      close = difflib.get_close_matches(key, list(known), n=1)
      hint = f" (did you mean {close[0]}?)" if close else ""
      raise UsageError(f"unknown config key {key}{hint}")
    *path, leaf = key.split(".")
    node = config
    for p in path:
      node = node[p]
    with node.ignore_type():
      node[leaf] = _parse_value(raw, known[key], key)
  return config


def split_overrides(rest: list[str]) -> dict[str, str]:
  """`['--config.a.b=1', '--config.c', '2']` -> `{'a.b': '1', 'c': '2'}`; anything else is a UsageError."""
  out, i = {}, 0
  while i < len(rest):
    arg = rest[i]
    if not arg.startswith("--config."):
      raise UsageError(f"unrecognised argument {arg!r} (see --help)")
    body = arg[len("--config.") :]
    if "=" in body:
      key, val = body.split("=", 1)
    elif i + 1 < len(rest) and not rest[i + 1].startswith("--"):
      key, val = body, rest[i + 1]
      i += 1
    else:
      raise UsageError(f"--config.{body} needs a value")
    out[key] = val
    i += 1
  return out


def _join_config_values(argv: list[str]) -> list[str]:
  """`--config.k v` -> `--config.k=v`, so argparse never mistakes `v` for the mode."""
  out, i = [], 0
  while i < len(argv):
    a = argv[i]
    if a.startswith("--config.") and "=" not in a and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
      out.append(f"{a}={argv[i + 1]}")
      i += 2
    else:
      out.append(a)
      i += 1
  return out


def _module_name(get_config: Callable) -> str:
  mod = get_config.__module__
  if mod == "__main__":
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    mod = spec.name if spec else Path(sys.argv[0]).stem
  return mod


def setup_compilation_cache(path: str | None) -> None:
  """Turns on JAX's persistent compilation cache (`''` turns it off)."""
  if not path:
    return
  import jax

  Path(path).expanduser().mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(Path(path).expanduser()))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def build_parser(
  prog: str,
  modes: dict,
  presets: dict,
  default_preset: str | None,
  flags: dict,
  doc: str | None,
  config_help: str,
) -> argparse.ArgumentParser:
  """The argument parser of `run` (mode, --workdir, --preset, extra flags, multi-host flags)."""
  mode_lines = "\n".join(
    f"  {name:<12} {(fn.__doc__ or '').strip().splitlines()[0] if fn.__doc__ else ''}"
    for name, fn in modes.items()
  )
  epilog = f"modes:\n{mode_lines}\n\npresets: {', '.join(presets) or '(none)'}"
  if default_preset:
    epilog += f" (default: {default_preset})"
  epilog += "\n\nconfig keys (override with --config.KEY=VALUE):\n" + config_help
  parser = argparse.ArgumentParser(
    prog=f"python -m {prog}",
    description=textwrap.dedent(doc or "").strip(),
    epilog=epilog,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument(
    "mode",
    nargs="?",
    default=next(iter(modes)),
    choices=list(modes),
    help="what to do (default: %(default)s)",
  )
  parser.add_argument(
    "--workdir",
    default=None,
    help="run folder: checkpoints, metrics, TensorBoard, artefacts "
    "(default: workdirs/<experiment>/<preset>); an existing one is resumed",
  )
  if presets:
    parser.add_argument(
      "--preset",
      default=default_preset,
      choices=list(presets),
      help="base configuration (default: %(default)s)",
    )
  for name, spec in flags.items():
    help_, default = (spec, None) if isinstance(spec, str) else spec
    if isinstance(default, bool):
      parser.add_argument(f"--{name}", action="store_true", default=default, help=help_)
    else:
      parser.add_argument(
        f"--{name}", default=default, type=type(default) if default is not None else str, help=help_
      )
  parser.add_argument(
    "--coordinator_address", default=None, help="multi-host: host:port of process 0 (or $AEJAX_COORDINATOR)"
  )
  parser.add_argument(
    "--num_processes",
    type=int,
    default=None,
    help="multi-host: number of processes (or $AEJAX_NUM_PROCESSES)",
  )
  parser.add_argument(
    "--process_id", type=int, default=None, help="multi-host: this process's index (or $AEJAX_PROCESS_ID)"
  )
  parser.add_argument(
    "--compilation_cache",
    default=os.environ.get("AEJAX_COMPILATION_CACHE", str(Path("~/.cache/aejax/jax").expanduser())),
    help="persistent XLA compilation cache folder ('' disables)",
  )
  parser.add_argument(
    "--overwrite", action="store_true", help="replace existing output files and folders (never an input)"
  )
  parser.add_argument("--debug", action="store_true", help="show full tracebacks")
  return parser


def run(
  get_config: Callable,
  *,
  modes: dict[str, Callable],
  presets: dict[str, Callable] | None = None,
  default_preset: str | None = None,
  flags: dict | None = None,
  doc: str | None = None,
  argv: list[str] | None = None,
  real_data_key: str = "data.root",
  positional: dict[str, str] | None = None,
) -> dict | None:
  """Parses the command line and runs the chosen mode.

  Args:
    get_config: returns the base ConfigDict (used when there are no presets).
    modes: name -> `fn(config, workdir: Path, args) -> dict | None`; the first is the default.
    presets: name -> `fn() -> ConfigDict`.
    default_preset: preset used when `--preset` is not given (default: `demo` if there is one).
    flags: extra flags: name -> help string (a string flag) or (help, default).
    doc: the experiment's docstring, shown by `--help`.
    argv: arguments (default `sys.argv[1:]`).
    real_data_key: the config value that `train --preset paper` must set (the real dataset's
      location); without it the run stops with a one-line error instead of silently training on
      the embedded synthetic data.
    positional: mode -> flag: `MODE VALUE` is read as `MODE --flag VALUE` (e.g. `decode FILE`).

  Returns:
    What the mode returned. On a one-line error (exit code 2 for usage, 1 otherwise) this calls
    `sys.exit` unless `argv` was given, in which case the exception propagates (for tests).
  """
  presets = presets or {}
  flags = flags or {}
  default_preset = default_preset or ("demo" if "demo" in presets else None)
  prog = _module_name(get_config)
  base = presets[default_preset]() if default_preset else get_config()
  config_help = "\n".join(f"  {k} = {v!r}" for k, v in _flatten(base).items())
  parser = build_parser(prog, modes, presets, default_preset, flags, doc, config_help)
  from_tests = argv is not None
  joined = _join_config_values(sys.argv[1:] if argv is None else argv)
  if positional and len(joined) > 1 and joined[0] in positional and not joined[1].startswith("-"):
    joined = [joined[0], f"--{positional[joined[0]]}", *joined[1:]]
  config_args = [a for a in joined if a.startswith("--config.")]
  args, rest = parser.parse_known_args([a for a in joined if not a.startswith("--config.")])
  rest = config_args + rest
  try:
    config = presets[args.preset]() if presets and getattr(args, "preset", None) else get_config()
    apply_overrides(config, split_overrides(rest))
    preset = getattr(args, "preset", None) or "default"
    if args.mode == "train" and preset == "paper":
      _require_real_data(config, real_data_key)
    workdir = Path(args.workdir or Path("workdirs") / prog.split(".")[-1] / preset)
    from aejax.io import WorkdirLock, check_workdir

    check_workdir(workdir)
    if args.mode == "train":
      WorkdirLock(workdir).check()  # fail before loading data; fit() takes the lock itself
    from absl import flags as absl_flags

    absl_flags.FLAGS.mark_as_parsed()  # Grain worker processes read absl flags
    from aejax.train.parallel import maybe_initialize_distributed

    maybe_initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
    setup_compilation_cache(args.compilation_cache)
    previous, _CURRENT["experiment"] = _CURRENT["experiment"], prog
    try:
      result = modes[args.mode](config, workdir, args)
    finally:
      _CURRENT["experiment"] = previous
    if isinstance(result, dict) and result:
      print(json.dumps(result, indent=2, default=str))
    return result
  except Exception as e:  # noqa: BLE001 - the one place that turns errors into one line
    if args.debug or not _is_user_error(e):
      raise
    if from_tests:
      raise
    print(f"error: {one_line(e)}", file=sys.stderr)
    sys.exit(2 if isinstance(e, UsageError) else 1)


def one_line(e: BaseException) -> str:
  """An error as one line: a KeyError names the missing key, other messages are joined."""
  if isinstance(e, KeyError) and len(e.args) == 1 and not isinstance(e, UsageError):
    return f"missing key {e.args[0]!r} ({type(e).__name__})"
  text = " ".join(str(e).split("\n")).strip()
  return text or type(e).__name__


def command(get_config: Callable, modes: dict, presets: dict, flags: dict, doc: str | None, **kw) -> Callable:
  """An experiment's `main(argv=None)`: `run` with its tables and `run`'s other keywords `kw`
  (`python -m experiments.NAME MODE ...`)."""

  def main(argv: list[str] | None = None):
    """The command line (see the experiment's docstring); `argv` default `sys.argv[1:]`."""
    return run(get_config, modes=modes, presets=presets, flags=flags, doc=doc, argv=argv, **kw)

  return main


def _require_real_data(config, key: str) -> None:
  """Raises a UsageError when `key` (dotted) is unset: the paper recipe needs the real dataset."""
  value = config
  for k in key.split("."):
    value = value.get(k) if hasattr(value, "get") else None
  if value in (None, ""):
    raise UsageError(
      f"--preset paper trains on the real dataset: set --config.{key}=PATH (the demo preset runs without it)"
    )


def _is_user_error(e: BaseException) -> bool:
  from aejax.train.loop import TrainingDiverged

  return isinstance(e, (ValueError, OSError, KeyError, TrainingDiverged))
