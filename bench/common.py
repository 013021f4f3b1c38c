"""Shared measuring tools for `bench/`: analytic FLOPs, matmul peak, timing, memory, machine info."""

from __future__ import annotations

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
    for item in (v if isinstance(v, (tuple, list)) else [v]):
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
  return 2.0 * n ** 3 / sec


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
  return (f"{kind}; jax {jax.__version__}, flax {flax.__version__}, Python "
          f"{platform.python_version()}; load {os.getloadavg()[0]:.1f}")


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
