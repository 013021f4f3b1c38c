"""Shared measuring tools for `bench/`: analytic FLOPs, matmul peak, timing, memory, machine info,
and the JAX-vs-PyTorch training-step comparison every per-model script runs the same way: the
loss-equality check before timing (`check_losses`), timing a JAX engine step (`bench_jax_step`) and
a PyTorch eager / torch.compile step (`bench_torch_step`), both in the same compute dtype (bf16 on
an accelerator: JAX models with `dtype=bfloat16`, PyTorch under bf16 autocast, float32 parameters
and losses on both sides), and the result rows, ratio and table (`result_row`, `ratio`,
`step_table`).

References: the throughput targets of issue 9 and `shared/specs/stack.md` (H100 figures).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import resource
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

RESULTS = Path(__file__).with_name("RESULTS.md")


def _eqn_flops(eqn) -> float:
  """2 × multiply-accumulates of one dot_general or conv_general_dilated equation."""
  name = eqn.primitive.name
  if name == "dot_general":
    a, b = (v.aval for v in eqn.invars)
    (ca, cb), (ba, bb) = eqn.params["dimension_numbers"]
    contract = int(np.prod([a.shape[i] for i in ca])) if ca else 1
    out = int(np.prod(eqn.outvars[0].aval.shape))
    return 2.0 * out * contract
  if name == "conv_general_dilated":
    lhs, rhs = (v.aval for v in eqn.invars)
    dn = eqn.params["dimension_numbers"]
    out = eqn.outvars[0].aval
    groups = eqn.params.get("feature_group_count", 1) * eqn.params.get("batch_group_count", 1)
    rhs_spec = dn.rhs_spec  # (out_feature_dim, in_feature_dim, *spatial)
    k_in = rhs.shape[rhs_spec[1]]
    k_spatial = int(np.prod([rhs.shape[d] for d in rhs_spec[2:]]))
    del groups  # the kernel's in-feature dim is already per group
    return 2.0 * int(np.prod(out.shape)) * k_in * k_spatial
  return 0.0


def _jaxpr_flops(jaxpr) -> float:
  total = 0.0
  for eqn in jaxpr.eqns:
    total += _eqn_flops(eqn)
    for sub in jax.core.subjaxprs(eqn) if hasattr(jax.core, "subjaxprs") else _subjaxprs(eqn):
      mult = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
      total += mult * _jaxpr_flops(sub)
  return total


def _subjaxprs(eqn):
  for v in eqn.params.values():
    for item in v if isinstance(v, (tuple, list)) else [v]:
      if hasattr(item, "jaxpr") and hasattr(item.jaxpr, "eqns"):
        yield item.jaxpr
      elif hasattr(item, "eqns"):
        yield item


def count_flops(fn, *args, **kwargs) -> float:
  """Analytic matmul + conv FLOPs of `fn(*args)` (forward and backward if `fn` differentiates).

  Walks the jaxpr (nested jit/remat/scan included; scan bodies counted `length` times) and counts
  2 × MACs of every `dot_general` and `conv_general_dilated`; elementwise work is not counted.
  """
  closed = jax.make_jaxpr(fn)(*args, **kwargs)
  return _jaxpr_flops(closed.jaxpr)


def timeit(fn, *args, warmup: int = 2, iters: int = 10, repeats: int = 3) -> float:
  """Median seconds per call of a jitted `fn` (blocks on the result)."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(iters):
      out = fn(*args)
    jax.block_until_ready(out)
    times.append((time.perf_counter() - t0) / iters)
  return statistics.median(times)


def compile_seconds(jitted, *args) -> float:
  """Seconds to lower and compile `jitted` for these arguments."""
  t0 = time.perf_counter()
  jitted.lower(*args).compile()
  return time.perf_counter() - t0


def matmul_peak(dtype=jnp.bfloat16, n: int | None = None) -> float:
  """Measured dense matmul FLOP/s of device 0 (an n×n @ n×n product, repeated)."""
  on_cpu = jax.devices()[0].platform == "cpu"
  n = n or (1024 if on_cpu else 8192)
  dtype = jnp.float32 if on_cpu else dtype
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda x: x @ x)
  sec = timeit(f, a, warmup=2, iters=3 if on_cpu else 20)
  return 2.0 * n**3 / sec


def peak_memory_bytes() -> int | None:
  """Peak device memory (GPU/TPU) or the process's max RSS (CPU)."""
  dev = jax.devices()[0]
  stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"])
  return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def machine() -> str:
  """One line naming the device, host CPU and versions."""
  dev = jax.devices()[0]
  cpu = platform.processor() or ""
  try:
    for line in open("/proc/cpuinfo"):
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  import flax

  kind = dev.device_kind if dev.platform != "cpu" else f"CPU ({os.cpu_count()} cores: {cpu})"
  return (
    f"{kind}; jax {jax.__version__}, flax {flax.__version__}, Python "
    f"{platform.python_version()}; load {os.getloadavg()[0]:.1f}"
  )


def update_section(title: str, body: str, path: Path = RESULTS) -> None:
  """Replaces (or appends) the `## title` section of bench/RESULTS.md."""
  text = path.read_text() if path.exists() else "# Benchmark results\n"
  stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
  section = f"## {title}\n\n{body.strip()}\n\nMeasured {stamp}.\n"
  pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
  if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text)
  else:
    text = text.rstrip() + "\n\n" + section
  path.write_text(text)


def append_section(path: Path, title: str, command: str, body: str) -> None:
  """Appends `## title (date, 2-core CPU, `command`)` and `body` to the results file `path` (a dated
  history: earlier sections are kept)."""
  stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
  with open(path, "a") as f:
    f.write(f"\n## {title} ({stamp}, 2-core CPU, `{command}`)\n\n{body}\n")


# --- The JAX vs PyTorch training-step comparison ------------------------------------------------

DTYPES = ("float32", "bfloat16")
# Relative loss difference allowed between the two sides: float32 checks use each script's own
# tolerance (1e-4 or 1e-5); a bf16 check compares two bf16 networks (8-bit mantissa, different
# rounding points and op fusion). Measured on CPU with the init weights: key-frame AE 2.9e-6, OVAL
# 2.1e-6, VAE 0, 3D AE (demo width) 7.1e-5; the bound is a few bf16 ulps (2^-8 = 3.9e-3).
BF16_RTOL = 1e-2


def default_dtype() -> str:
  """The compute dtype of the timed steps: bfloat16 on an accelerator, float32 on CPU."""
  return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def add_dtype_flag(parser) -> None:
  """`--dtype`: compute dtype of both sides (parameters and losses stay float32)."""
  parser.add_argument(
    "--dtype",
    choices=DTYPES,
    default=None,
    help="compute dtype of both sides: JAX model dtype, PyTorch autocast "
    "(default: bfloat16 on GPU/TPU, float32 on CPU)",
  )


def jnp_dtype(dtype: str):
  return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype]


def short(dtype: str) -> str:
  return {"float32": "f32", "bfloat16": "bf16"}.get(dtype, dtype)


def load_torch(required: bool = True):
  """torch, seeded (0) and using every visible core; None when absent and not `required`."""
  try:
    import torch
  except ImportError:
    if required:
      raise SystemExit("torch is not installed: pip install -r bench/requirements.txt") from None
    return None
  torch.manual_seed(0)
  torch.set_num_threads(os.cpu_count() or 1)
  return torch


def step_parser(doc: str, batch: int, steps: int):
  """The flags every per-model script shares: --batch, --steps, --dtype, --no-compile, --no-write."""
  import argparse

  p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=batch)
  p.add_argument("--steps", type=int, default=steps)
  add_dtype_flag(p)
  p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
  p.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
  return p


def torch_device(torch) -> str:
  return "cuda" if torch.cuda.is_available() else "cpu"


def autocast(torch, device: str, dtype: str):
  """PyTorch's bf16 autocast when `dtype` is bfloat16, else a no-op context."""
  return torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")


@contextlib.contextmanager
def exact(torch=None):
  """Full float32 matmuls and convolutions on both sides (GPUs default to TF32-like precision)."""
  with jax.default_matmul_precision("highest"):
    if torch is None:
      yield
      return
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    old = [f.allow_tf32 for f in flags]
    for f in flags:
      f.allow_tf32 = False
    try:
      yield
    finally:
      for f, o in zip(flags, old):
        f.allow_tf32 = o


def loss_check(jax_loss: float, torch_loss: float, dtype: str, rtol: float) -> dict:
  """One loss comparison: relative difference to the PyTorch loss and whether it is within `rtol`."""
  rel = abs(jax_loss - torch_loss) / max(abs(torch_loss), 1e-12)
  return {
    "dtype": dtype,
    "jax": float(jax_loss),
    "torch": float(torch_loss),
    "rel": float(rel),
    "rtol": rtol,
    "ok": bool(rel <= rtol),
  }  # NaN: not ok


def check_losses(losses, dtype: str, rtol: float, torch=None) -> list[dict]:
  """The loss-equality check run before any timing.

  Args:
    losses: `losses(dtype) -> (jax_loss, torch_loss)` on the same weights and inputs, both sides
      computing in `dtype` (JAX model dtype, PyTorch autocast), losses in float32.
    dtype: the compute dtype of the timed steps.
    rtol: relative tolerance of the float32 check.
    torch: the torch module (its TF32 switches are turned off for the float32 check).

  Returns:
    One `loss_check` dict for float32 (always, under `exact`) and, when `dtype` is not float32, one
    for `dtype` with the tolerance `BF16_RTOL`.
  """
  with exact(torch):
    out = [loss_check(*losses("float32"), "float32", rtol)]
  if dtype != "float32":
    out.append(loss_check(*losses(dtype), dtype, BF16_RTOL))
  return out


def check_summary(checks: list[dict]) -> str:
  """`ok (rel 3.1e-06, f32; rel 1.2e-03, bf16)` or `MISMATCH (...)`: the table's check column."""
  detail = "; ".join(f"rel {c['rel']:.1e}, {short(c['dtype'])}" for c in checks)
  return f"{'ok' if all(c['ok'] for c in checks) else 'MISMATCH'} ({detail})"


def require_agreement(checks: list[dict]) -> None:
  """Prints every check; SystemExit when one is out of tolerance (nothing is timed then)."""
  for c in checks:
    print(
      f"loss check ({short(c['dtype'])}, same weights and inputs): jax {c['jax']:.6f} torch "
      f"{c['torch']:.6f} relative difference {c['rel']:.1e} (tolerance {c['rtol']:.0e})"
    )
  if not all(c["ok"] for c in checks):
    raise SystemExit(f"the two sides disagree: not timing them ({check_summary(checks)})")


def time_steps(step, steps: int) -> dict:
  """`first_s` of one untimed (compiling) call of `step()`, `step_s` the median of `steps` more.

  `step()` must return only when its work is done (block on JAX results, synchronise CUDA).
  """
  t0 = time.perf_counter()
  step()
  first = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
  return {"first_s": first, "step_s": statistics.median(times)}


def bench_jax_step(model, loss_fn, tx, example, batch: dict, steps: int, *, parallel: str = "none") -> dict:
  """The engine's jitted training step (forward, backward, update) on one device-resident batch."""
  from aejax.train import init_state, make_train_step

  state = jax.jit(lambda: init_state(model, tx, jax.random.key(0), example))()
  runner = make_train_step(model, loss_fn, tx, parallel=parallel)
  state = runner.put_state(state)
  data = runner.put_batch(jax.device_put(batch))
  key = jax.random.key(1)

  def step():
    nonlocal state
    state, m = runner(state, data, key)
    jax.block_until_ready(m)

  return {**time_steps(step, steps), "device": jax.devices()[0].device_kind}


def bench_torch_step(
  torch, model, opt, x, loss_fn, steps: int, *, dtype: str = "float32", compile_: str | None = None
) -> dict:
  """A PyTorch training step: `model(x)` under `autocast(dtype)`, `loss_fn(outputs, x)` in float32
  outside it (the outputs cast to float32), backward, `opt.step()`.

  `compile_`: None (eager), "model" (`torch.compile(model)`) or "step" (the whole step compiled).
  """
  dev = x.device.type
  fwd = torch.compile(model) if compile_ == "model" else model
  sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

  def step():
    opt.zero_grad(set_to_none=True)
    with autocast(torch, dev, dtype):
      out = fwd(x)
    out = tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()
    loss = loss_fn(out, x)
    loss.backward()
    opt.step()
    return loss

  fn = torch.compile(step) if compile_ == "step" else step
  return {**time_steps(lambda: (fn(), sync()), steps), "device": dev}


def bench_torch_adam(
  torch, model, make_x, loss_fn, steps: int, *, compiled: bool, dtype: str = "float32", lr: float = 1e-3
) -> dict:
  """`bench_torch_step` of `model` in train mode with Adam(`lr`) on `make_x(device)`, the model
  compiled with torch.compile when `compiled`."""
  dev = torch_device(torch)
  model = model.to(dev).train()
  opt = torch.optim.Adam(model.parameters(), lr=lr)
  return bench_torch_step(
    torch, model, opt, make_x(dev), loss_fn, steps, dtype=dtype, compile_="model" if compiled else None
  )


def result_row(side: str, res: dict, batch: int, dtype: str | None = None) -> dict:
  """A table row of one side: `res` of `bench_jax_step` / `bench_torch_step` plus rates."""
  row = {
    "side": side,
    "device": res.get("device", "?"),
    "batch": batch,
    **res,
    "per_s": batch / res["step_s"],
    "step_ms": 1e3 * res["step_s"],
  }
  if dtype:
    row["dtype"] = dtype
  return row


def ratio(rows: list[dict]) -> tuple[float, str] | None:
  """(JAX examples/s over PyTorch's, "torch.compile" or "eager"): torch.compile when it ran, else
  eager; None without a measured JAX or PyTorch row. Rows need `side` and `per_s`."""
  jax_r = next((r for r in rows if r["side"].startswith("JAX") and r.get("per_s")), None)
  for kind in ("torch.compile", "eager"):
    ref = next((r for r in rows if kind in r["side"] and r.get("per_s")), None)
    if jax_r and ref:
      return jax_r["per_s"] / ref["per_s"], kind
  return None


def compare_steps(
  batch: int, jax_run, torch_run, *, torch_version: str, dtype: str, compile_: bool = True
) -> list[dict]:
  """Rows of the JAX step, PyTorch eager and (unless `compile_` is False) torch.compile.

  `jax_run()` and `torch_run(compiled)` return `time_steps`-style dicts; a torch.compile failure
  is reported and leaves the other rows.
  """
  rows = [result_row(f"JAX {jax.__version__} (jit)", jax_run(), batch, dtype)]
  print(rows[-1], flush=True)
  for compiled in (False, True) if compile_ else (False,):
    label = "torch.compile" if compiled else "eager"
    try:
      rows.append(result_row(f"PyTorch {torch_version} {label}", torch_run(compiled), batch, dtype))
    except Exception as e:  # noqa: BLE001 - report, keep the other rows
      if not compiled:
        raise
      print(f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
      continue
    print(rows[-1], flush=True)
  return rows


def step_table(rows: list[dict], unit: str) -> str:
  """Markdown table of `compare_steps` rows, and the JAX / PyTorch ratio under it."""
  lines = [
    f"| side | device | dtype | batch | ms / step | {unit} | first step (s) |",
    "|---|---|---|---|---|---|---|",
  ]
  lines += [
    f"| {r['side']} | {r['device']} | {short(r.get('dtype', '?'))} | {r['batch']} | "
    f"{r['step_ms']:.0f} | {r['per_s']:.2f} | {r['first_s']:.1f} |"
    for r in rows
  ]
  rt = ratio(rows)
  if rt:
    lines += ["", f"JAX / PyTorch {rt[1]}: {rt[0]:.2f}×."]
  return "\n".join(lines)
