"""`bench.common.count_flops` against closed-form matmul / convolution FLOP counts.

The analytic counter behind the TFLOP/s column of `bench/RESULTS.md`: 2 × multiply-accumulates of
every `dot_general` and `conv_general_dilated` in the jaxpr, nested jit and scan bodies included
(scan bodies `length` times), elementwise work not counted. No timing is asserted here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

common = pytest.importorskip("bench.common")
count_flops = common.count_flops

B, K, N = 4, 24, 40


def _conv(x, w, *, stride=1, padding="SAME", groups=1):
  return lax.conv_general_dilated(
    x, w, (stride, stride), padding, feature_group_count=groups, dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


def test_dense_is_2bkn():
  x, w = jnp.ones((B, K)), jnp.ones((K, N))
  assert count_flops(lambda a, b: a @ b + 1.0, x, w) == 2 * B * K * N


def test_flax_dense_and_abstract_inputs():
  import flax.linen as nn

  m = nn.Dense(N)
  params = m.init(jax.random.key(0), jnp.ones((1, K)))
  x = jax.ShapeDtypeStruct((B, 7, K), jnp.float32)  # shapes only: nothing is computed
  assert count_flops(m.apply, params, x) == 2 * B * 7 * K * N


def test_batched_einsum():
  a, b = jnp.ones((3, 5, 6)), jnp.ones((3, 6, 7))
  assert count_flops(lambda p, q: jnp.einsum("bij,bjk->bik", p, q), a, b) == 2 * 3 * 5 * 6 * 7


def test_elementwise_counts_nothing():
  x = jnp.ones((B, K))
  assert count_flops(lambda a: jnp.tanh(a) * a + jnp.exp(a).sum(), x) == 0


@pytest.mark.parametrize("stride,padding,out_hw", [(1, "SAME", (10, 12)), (2, "VALID", (4, 5))])
def test_conv_2d(stride, padding, out_hw):
  x, w = jnp.ones((2, 10, 12, 6)), jnp.ones((3, 3, 6, 8))
  ho, wo = out_hw
  assert count_flops(lambda a, b: _conv(a, b, stride=stride, padding=padding), x, w) == (
    2 * 2 * ho * wo * 8 * 6 * 3 * 3
  )


def test_grouped_and_depthwise_conv():
  x = jnp.ones((2, 9, 9, 12))
  w = jnp.ones((3, 3, 12 // 4, 16))  # 4 groups: each output channel sees 3 input channels
  assert count_flops(lambda a, b: _conv(a, b, groups=4), x, w) == 2 * 2 * 9 * 9 * 16 * 3 * 9
  wd = jnp.ones((5, 5, 1, 12))  # depthwise
  assert count_flops(lambda a, b: _conv(a, b, groups=12), x, wd) == 2 * 2 * 9 * 9 * 12 * 1 * 25


def test_conv_3d():
  x, w = jnp.ones((1, 6, 8, 8, 2)), jnp.ones((3, 3, 3, 2, 4))
  f = lambda a, b: lax.conv_general_dilated(
    a,
    b,
    (1, 1, 1),
    "SAME",  # noqa: E731
    dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
  )
  assert count_flops(f, x, w) == 2 * 6 * 8 * 8 * 4 * 2 * 27


def test_scan_body_counted_length_times_and_nested_jit():
  w = jnp.ones((K, K))

  @jax.jit
  def inner(h, w):
    return jnp.tanh(h @ w)

  def f(h0, w):
    h, _ = lax.scan(lambda h, _: (inner(h, w), None), h0, None, length=7)
    return h

  assert count_flops(f, jnp.ones((B, K)), w) == 7 * 2 * B * K * K


def test_fori_loop_with_static_bounds_lowers_to_scan():
  w = jnp.ones((K, K))
  f = lambda h, w: lax.fori_loop(0, 5, lambda i, h: h @ w, h)  # noqa: E731
  assert count_flops(f, jnp.ones((B, K)), w) == 5 * 2 * B * K * K


def test_grad_of_dense_is_three_matmuls():
  x, w = jnp.ones((B, K)), jnp.ones((K, N))
  loss = lambda a, b: jnp.sum((a @ b) ** 2)  # noqa: E731
  # forward x@w, then dL/dx = g @ w.T and dL/dw = x.T @ g: each 2·B·K·N
  assert count_flops(jax.grad(loss, argnums=(0, 1)), x, w) == 3 * 2 * B * K * N
  # only dL/dw: forward + one backward matmul
  assert count_flops(jax.grad(loss, argnums=1), x, w) == 2 * 2 * B * K * N


@pytest.mark.parametrize("groups", [1, 3])
def test_grad_of_conv_is_three_convs(groups):
  x, w = jnp.ones((2, 8, 8, 6)), jnp.ones((3, 3, 6 // groups, 9))
  fwd = 2 * 2 * 8 * 8 * 9 * (6 // groups) * 9
  loss = lambda a, b: jnp.sum(_conv(a, b, groups=groups) ** 2)  # noqa: E731
  assert count_flops(loss, x, w) == fwd
  # input gradient (transposed conv) and kernel gradient (batch-grouped conv): one forward each
  assert count_flops(jax.grad(loss, argnums=(0, 1)), x, w) == 3 * fwd


def test_training_step_of_a_flax_mlp_matches_hand_count():
  import flax.linen as nn
  import optax

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3)(nn.relu(nn.Dense(16)(x)))

  m, tx = MLP(), optax.adam(1e-3)
  params = m.init(jax.random.key(0), jnp.ones((1, 10)))
  opt = tx.init(params)

  def step(params, opt, x):
    g = jax.grad(lambda p: jnp.mean(m.apply(p, x) ** 2))(params)
    upd, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, upd), opt

  b = 32
  layer1, layer2 = 2 * b * 10 * 16, 2 * b * 16 * 3
  # forward both, layer 2: dx + dW, layer 1: dW only (no gradient w.r.t. the data); Adam adds none
  expected = layer1 + layer2 + 2 * layer2 + layer1
  assert count_flops(step, params, opt, np.ones((b, 10), np.float32)) == expected


# --- The JAX vs PyTorch comparison helpers (loss check, timing, rows, ratio) ---------------------


def _fake_torch():
  """Just the TF32 switches `bench.common.exact` turns off and restores."""
  from types import SimpleNamespace

  ns = SimpleNamespace
  return ns(backends=ns(cuda=ns(matmul=ns(allow_tf32=True)), cudnn=ns(allow_tf32=True)))


def test_loss_check_passes_equal_and_fails_mismatched_losses():
  ok = common.loss_check(2.5, 2.5, "float32", 1e-4)
  assert ok["ok"] and ok["rel"] == 0.0
  close = common.loss_check(1.00005, 1.0, "float32", 1e-4)  # 5e-5 relative
  assert close["ok"] and close["rel"] == pytest.approx(5e-5)
  off = common.loss_check(1.1, 1.0, "float32", 1e-4)
  assert not off["ok"] and off["rel"] == pytest.approx(0.1)
  assert not common.loss_check(float("nan"), 1.0, "bfloat16", 1.0)["ok"]
  assert common.loss_check(-3.0, -3.015, "bfloat16", common.BF16_RTOL)["ok"]  # 0.5 % < 1 %
  assert not common.loss_check(-3.0, -3.1, "bfloat16", common.BF16_RTOL)["ok"]


def test_check_losses_float32_at_full_precision_and_bf16_with_its_tolerance():
  calls, torch = [], _fake_torch()

  def losses(dtype):
    calls.append(
      (
        dtype,
        jax.config.jax_default_matmul_precision,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
      )
    )
    return (1.0, 1.0) if dtype == "float32" else (1.005, 1.0)

  checks = common.check_losses(losses, "float32", 1e-5, torch)
  assert [c["dtype"] for c in checks] == ["float32"] and checks[0]["rtol"] == 1e-5
  assert calls == [("float32", "highest", False, False)]
  assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32  # restored
  calls.clear()
  checks = common.check_losses(losses, "bfloat16", 1e-5, torch)
  assert [c["dtype"] for c in checks] == ["float32", "bfloat16"]
  assert calls[1][1:] == (None, True, True)  # the bf16 check runs at the default precision
  assert checks[1]["rtol"] == common.BF16_RTOL and checks[1]["ok"]
  assert common.check_summary(checks) == "ok (rel 0.0e+00, f32; rel 5.0e-03, bf16)"
  common.require_agreement(checks)  # no exit


def test_require_agreement_stops_on_a_mismatch():
  checks = common.check_losses(lambda d: (1.0, 1.0) if d == "float32" else (1.5, 1.0), "bfloat16", 1e-4)
  assert common.check_summary(checks).startswith("MISMATCH (rel 0.0e+00, f32; rel 5.0e-01, bf16)")
  with pytest.raises(SystemExit, match="disagree"):
    common.require_agreement(checks)
  with pytest.raises(SystemExit):
    common.require_agreement([common.loss_check(1.001, 1.0, "float32", 1e-4)])


def test_time_steps_first_call_apart_then_median(monkeypatch):
  clock = iter([0.0, 5.0, 5.0, 6.0, 6.0, 9.0, 9.0, 11.0])  # first call 5 s, then 1, 3, 2 s
  monkeypatch.setattr(common.time, "perf_counter", lambda: next(clock))
  calls = []
  res = common.time_steps(lambda: calls.append(1), 3)
  assert len(calls) == 4 and res == {"first_s": 5.0, "step_s": 2.0}


def test_result_row_and_ratio():
  res = {"first_s": 3.0, "step_s": 0.25, "device": "H100"}
  jax_r = common.result_row("JAX 0.x (jit)", res, 64, "bfloat16")
  assert jax_r["per_s"] == 256.0 and jax_r["step_ms"] == 250.0 and jax_r["dtype"] == "bfloat16"
  eager = common.result_row("PyTorch 2 eager", {"first_s": 1.0, "step_s": 1.0, "device": "cuda"}, 64)
  comp = common.result_row("PyTorch 2 torch.compile", {"first_s": 9.0, "step_s": 0.5, "device": "cuda"}, 64)
  assert eager["per_s"] == 64.0 and comp["per_s"] == 128.0
  assert common.ratio([jax_r, eager, comp]) == (2.0, "torch.compile")
  failed = {"side": "PyTorch torch.compile (cuda)", "per_s": None}
  assert common.ratio([jax_r, eager, failed]) == (4.0, "eager")
  assert common.ratio([jax_r]) is None
  table = common.step_table([jax_r, eager, comp], "images/s")
  assert "| JAX 0.x (jit) | H100 | bf16 | 64 | 250 | 256.00 | 3.0 |" in table
  assert table.endswith("JAX / PyTorch torch.compile: 2.00×.")


def test_bench_jax_step_traces_once_in_bf16_with_a_float32_loss():
  import flax.linen as nn
  import optax

  from aejax.train import apply_model

  class Tiny(nn.Module):
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train=False):
      return nn.Dense(3, dtype=self.dtype)(x), {}

  seen = []

  def loss_fn(model, variables, batch, rngs, train):
    (y, _), state = apply_model(model, variables, batch["x"], rngs=rngs, train=train)
    loss = jnp.mean((y.astype(jnp.float32) - 1.0) ** 2)
    seen.append((y.dtype, loss.dtype, variables["params"]["Dense_0"]["kernel"].dtype))
    return loss, {"loss": loss}, state

  res = common.bench_jax_step(
    Tiny(dtype=jnp.bfloat16),
    loss_fn,
    optax.sgd(0.1),
    jnp.zeros((1, 4)),
    {"x": np.ones((8, 4), np.float32)},
    3,
  )
  assert seen == [(jnp.bfloat16, jnp.float32, jnp.float32)]  # one trace: bf16 compute, f32 loss, params
  assert set(res) == {"first_s", "step_s", "device"} and res["step_s"] > 0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_bench_torch_step_autocasts_forward_and_takes_a_float32_loss(dtype):
  torch = pytest.importorskip("torch")
  lin = torch.nn.Linear(4, 3)
  before = lin.weight.detach().clone()
  seen = []

  def loss_fn(out, x):
    seen.append(out.dtype)
    return (out**2).mean()

  class Recorder(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.lin, self.dtypes = lin, []

    def forward(self, x):
      y = self.lin(x)
      self.dtypes.append(y.dtype)
      return y

  model = Recorder()
  res = common.bench_torch_step(
    torch, model, torch.optim.SGD(lin.parameters(), lr=0.1), torch.ones(8, 4), loss_fn, 2, dtype=dtype
  )
  assert res["device"] == "cpu" and seen == [torch.float32] * 3
  assert model.dtypes == [getattr(torch, dtype)] * 3
  assert lin.weight.dtype == torch.float32 and not torch.equal(lin.weight, before)  # 3 SGD updates


def test_oval_loss_check_agrees_in_float32_and_bf16_and_catches_other_weights():
  torch = pytest.importorskip("torch")
  from aejax.models.oval import OVAL
  from bench import oval as ov

  size = (40, 56)
  model = OVAL()
  # Random weights of the init's shapes (compiling OVAL's init takes most of a minute on a loaded CPU).
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *size, 3))))["params"]
  rng = np.random.default_rng(0)
  params = jax.tree.map(
    lambda a: (rng.uniform(-1, 1, a.shape) / np.sqrt(np.prod(a.shape[:-1]))).astype(np.float32), shapes
  )
  checks = common.check_losses(
    lambda d: ov.check_losses_agree(model, params, torch, size, d), "bfloat16", 1e-5, torch
  )
  assert [c["ok"] for c in checks] == [True, True], checks
  assert checks[1]["jax"] != checks[0]["jax"]  # the bf16 check really computed in bf16
  other = jax.tree.map(lambda a: a * 1.05, params)  # JAX with other weights than PyTorch's
  jl, _ = ov.check_losses_agree(model, other, torch, size)
  assert not common.loss_check(jl, checks[0]["torch"], "float32", 1e-5)["ok"]
