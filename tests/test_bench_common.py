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
  return lax.conv_general_dilated(x, w, (stride, stride), padding, feature_group_count=groups,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


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
      2 * 2 * ho * wo * 8 * 6 * 3 * 3)


def test_grouped_and_depthwise_conv():
  x = jnp.ones((2, 9, 9, 12))
  w = jnp.ones((3, 3, 12 // 4, 16))  # 4 groups: each output channel sees 3 input channels
  assert count_flops(lambda a, b: _conv(a, b, groups=4), x, w) == 2 * 2 * 9 * 9 * 16 * 3 * 9
  wd = jnp.ones((5, 5, 1, 12))  # depthwise
  assert count_flops(lambda a, b: _conv(a, b, groups=12), x, wd) == 2 * 2 * 9 * 9 * 12 * 1 * 25


def test_conv_3d():
  x, w = jnp.ones((1, 6, 8, 8, 2)), jnp.ones((3, 3, 3, 2, 4))
  f = lambda a, b: lax.conv_general_dilated(a, b, (1, 1, 1), "SAME",  # noqa: E731
                                            dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
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
