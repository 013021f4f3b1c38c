"""The key-frame autoencoder "AE_final" of Chen et al. 2021 (J. Phys.: Conf. Ser. 2025 012018),
as implemented in ashrithjacob/Best-Frame-Retrieval (`keyframe/model.py`).

Layers (`specs/seeds_keyframe_oval_vae.md` §1.3), LeakyReLU(0.01) everywhere, tanh output:

  encoder: BN(input) -> 3x3 conv 32 -> BN -> 3x3 conv 64 -> BN -> 4x4/2 conv 128 -> BN
           -> 4x4/2 conv 64 -> BN -> 4x4/2 conv 8 -> BN = latent [B, H/8, W/8, 8] (no activation)
  decoder: 4x4/2 convT 64 -> BN -> 4x4/2 convT 128 -> BN -> 4x4/2 convT 64 -> BN
           -> 3x3 convT 32 -> BN -> 3x3 convT 3 -> tanh

Fully convolutional: any H, W divisible by 8 (96x192 for training, the video's own size for
extraction). Inputs and outputs are in [-1, 1] (the original normalised with mean = std = 0.5).

The original reuses the encoder's bn4, bn3, bn2, bn1 after the decoder's first four transposed
convs, so those BatchNorms update their running statistics twice per step from two different
distributions. By default the decoder has its own norms; `share_norms=True` reproduces the
original (580,449 parameters: encoder convs 289,928, decoder convs 289,923, BN affine 598).

BatchNorm momentum is Flax's decay of the running average: PyTorch's `momentum=m` is Flax's
`1 - m` (`flax_momentum`); the final model used PyTorch 0.5, i.e. Flax 0.5 (PyTorch's default 0.1
would be Flax 0.9). eps 1e-5 as PyTorch. One small difference stays: PyTorch updates the running
variance with the unbiased batch variance, Flax with the biased one (a factor n/(n-1), n = B*H*W).

The released weights (`MS_SSIM_L1-epoch-50.pth`, the README's pick) load with
`load_original_weights(path)` or `load_torch_state_dict(variables, state_dict)`: equal to the
PyTorch model in eval mode to ~1e-6 (tests/test_original_weights.py). They were trained on
[-1, 1] images, which our pipeline feeds; the original's key-frame code fed [0, 1] frames instead
(`original_inference=True` reproduces that from our [-1, 1] input, see `load_torch_state_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from aejax.models.layers import ConvTranspose4x4, batch_norm, torch_uniform_init
from aejax.models.torch_weights import load_state_dict, map_state_dict, to_numpy

Dtype = Any


def flax_momentum(torch_momentum: float) -> float:
  """PyTorch BatchNorm momentum (weight of the new batch) -> Flax momentum (decay)."""
  return 1.0 - float(torch_momentum)


class KeyframeAE(nn.Module):
  """AE_final (see the module docstring).

  Attributes:
    features: channels of the four feature convs (encoder order; the decoder mirrors them).
    latent_channels: channels of the latent map.
    share_norms: reuse the encoder's BatchNorms in the decoder (the original's behaviour).
    input_norm: BatchNorm on the raw input (bn0 of the final model).
    momentum: Flax BatchNorm momentum (0.5 == the original's PyTorch 0.5).
    epsilon: BatchNorm epsilon.
    negative_slope: LeakyReLU slope.
    torch_init: PyTorch's default U(+-1/sqrt(fan_in)) init for kernels and biases.
    axis_name: BatchNorm statistics are averaged over this mapped axis (pmap) when set.
    dtype: computation dtype; param_dtype: parameter dtype.
  """

  features: Sequence[int] = (32, 64, 128, 64)
  latent_channels: int = 8
  share_norms: bool = False
  input_norm: bool = True
  momentum: float = 0.5
  epsilon: float = 1e-5
  negative_slope: float = 0.01
  torch_init: bool = True
  axis_name: str | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def _bn(self, name: str) -> nn.BatchNorm:
    return batch_norm(self, name)

  def _conv(self, cls, features: int, k: int, stride: int, pad: int, fan_in: int, name: str):
    """A conv (or transposed conv) with PyTorch's padding `pad`."""
    kw = {}
    if self.torch_init:
      kw = {"kernel_init": torch_uniform_init(fan_in), "bias_init": torch_uniform_init(fan_in)}
    if cls is nn.ConvTranspose and stride == 2:  # k4 s2 p1: an exact 2x upsample
      return ConvTranspose4x4(
        features, padding=pad, dtype=self.dtype, param_dtype=self.param_dtype, name=name, **kw
      )
    if cls is nn.ConvTranspose:  # stride 1: Flax padding k - 1 - p, exactly a convolution (no flip)
      cls, pad = nn.Conv, k - 1 - pad
    return cls(
      features,
      (k, k),
      strides=(stride, stride),
      padding=((pad, pad), (pad, pad)),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name=name,
      **kw,
    )

  def setup(self):
    """Builds the encoder and decoder (shared BatchNorm modules when `share_norms`)."""
    f1, f2, f3, f4 = self.features
    lat = self.latent_channels
    # (in, out, kernel, stride) of the encoder convs, PyTorch padding 1 each.
    enc = [(3, f1, 3, 1), (f1, f2, 3, 1), (f2, f3, 4, 2), (f3, f4, 4, 2), (f4, lat, 4, 2)]
    self.enc_convs = [
      self._conv(nn.Conv, o, k, s, 1, i * k * k, f"conv{j + 1}") for j, (i, o, k, s) in enumerate(enc)
    ]
    # Transposed convs: PyTorch (k, s, p=1) == Flax ConvTranspose with padding k - 1 - p per side
    # (computed by `ConvTranspose4x4` for stride 2, by a plain conv for stride 1); weights ported from
    # PyTorch need the spatial flip (Flax's `transpose_kernel=True` convention);
    # PyTorch's fan_in for a ConvTranspose weight [in, out, k, k] is out * k * k.
    dec = [(lat, f4, 4, 2), (f4, f3, 4, 2), (f3, f2, 4, 2), (f2, f1, 3, 1), (f1, 3, 3, 1)]
    self.dec_convs = [
      self._conv(nn.ConvTranspose, o, k, s, 1, o * k * k, f"t_conv{j + 1}")
      for j, (i, o, k, s) in enumerate(dec)
    ]
    self.bn0 = self._bn("bn0") if self.input_norm else None
    self.enc_norms = [self._bn(f"bn{j + 1}") for j in range(5)]
    if self.share_norms:  # t_conv1..4 -> bn4, bn3, bn2, bn1 (the same modules)
      self.dec_norms = [self.enc_norms[3], self.enc_norms[2], self.enc_norms[1], self.enc_norms[0]]
    else:
      self.dec_norms = [self._bn(f"dec_bn{j + 1}") for j in range(4)]

  def _act(self, x):
    return nn.leaky_relu(x, self.negative_slope)

  def encode(self, x, *, train: bool = False):
    """[B, H, W, 3] in [-1, 1] -> latent [B, H/8, W/8, latent_channels]."""
    if x.ndim != 4 or x.shape[1] % 8 or x.shape[2] % 8:
      raise ValueError(f"KeyframeAE: expected [B, H, W, 3] with H and W divisible by 8, got {x.shape}")
    h = jnp.asarray(x, self.dtype)
    if self.bn0 is not None:
      h = self.bn0(h, use_running_average=not train)
    for j, conv in enumerate(self.enc_convs):
      h = self.enc_norms[j](conv(h), use_running_average=not train)
      if j < len(self.enc_convs) - 1:
        h = self._act(h)
    return h

  def decode(self, z, *, train: bool = False):
    """Latent [B, h, w, latent_channels] -> reconstruction [B, 8h, 8w, 3] in [-1, 1]."""
    h = z
    for j, conv in enumerate(self.dec_convs[:-1]):
      h = self._act(self.dec_norms[j](conv(h), use_running_average=not train))
    return jnp.tanh(self.dec_convs[-1](h))

  def __call__(self, x, *, train: bool):
    """Returns `(reconstruction [B, H, W, 3], {"z": latent [B, H/8, W/8, C]})`."""
    z = self.encode(x, train=train)
    return self.decode(z, train=train), {"z": z}


def param_count(params) -> int:
  """Number of parameters in a params pytree."""
  return int(sum(p.size for p in jax.tree.leaves(params)))


# The original registers every module twice: as an attribute and inside its `encoder` / `decoder`
# Sequential (LeakyReLU and Tanh at the missing indices), so its state dict has 120 keys.
_SEQUENTIAL_ALIASES = {
  **{
    f"encoder.{i}": n
    for i, n in enumerate(
      [
        "bn0",
        "conv1",
        "bn1",
        None,
        "conv2",
        "bn2",
        None,
        "conv3",
        "bn3",
        None,
        "conv4",
        "bn4",
        None,
        "conv5",
        "bn5",
      ]
    )
    if n
  },
  **{
    f"decoder.{i}": n
    for i, n in enumerate(
      [
        "t_conv1",
        "bn4",
        None,
        "t_conv2",
        "bn3",
        None,
        "t_conv3",
        "bn2",
        None,
        "t_conv4",
        "bn1",
        None,
        "t_conv5",
      ]
    )
    if n
  },
}


def _canonical_names(state_dict: Mapping) -> dict[str, np.ndarray]:
  """Attribute names for Sequential aliases (which must hold the same values); counters dropped."""
  out: dict[str, np.ndarray] = {}
  for key, value in state_dict.items():
    module, _, attr = key.rpartition(".")
    if attr == "num_batches_tracked":
      continue
    name = f"{_SEQUENTIAL_ALIASES.get(module, module)}.{attr}"
    value = to_numpy(value)
    if name in out and (out[name].shape != value.shape or not np.array_equal(out[name], value)):
      raise ValueError(f"KeyframeAE: state-dict keys {key!r} and {name!r} name one module but differ")
    out[name] = value
  return out


def load_torch_state_dict(
  variables: Mapping, state_dict: Mapping, *, original_inference: bool = False, epsilon: float = 1e-5
) -> dict:
  """Best-Frame-Retrieval's AE_final state dict -> our `KeyframeAE` variables (new host arrays).

  Conv weights [out, in, kh, kw] -> kernels [kh, kw, in, out]; transposed-conv weights
  [in, out, kh, kw] -> kernels [kh, kw, in, out] flipped in both spatial axes (`ConvTranspose4x4`
  and the stride-1 convs computing PyTorch's `ConvTranspose2d`); BatchNorm weight, bias,
  running_mean, running_var -> params scale, bias and batch_stats mean, var. The original's
  `encoder.N` / `decoder.N` keys are the same modules again (checked equal);
  `num_batches_tracked` is ignored. For a model with `share_norms=False` the decoder's norms get
  copies of the shared ones (bn4, bn3, bn2, bn1), which is the same function in eval mode.

  Args:
    variables: our model's variables (or their `jax.eval_shape`), `{"params", "batch_stats"}`.
    state_dict: torch names -> torch tensors or NumPy arrays.
    original_inference: the weights were trained on [-1, 1] images (what our pipeline feeds), but
      the original's key-frame extraction fed [0, 1] frames. When True, bn0's running statistics
      are rewritten so that our model fed x in [-1, 1] computes exactly (in eval mode) what the
      original computed on (x + 1) / 2: mean' = 2 mean - 1, var' = 4 (var + eps) - eps.
    epsilon: the BatchNorm epsilon (1e-5, both sides), used by `original_inference`.

  Raises:
    ValueError: one line naming a missing, unexpected or mis-shaped key.
  """
  canon = _canonical_names(state_dict)
  conv = lambda w: np.transpose(w, (2, 3, 1, 0))  # [out, in, kh, kw] -> [kh, kw, in, out]
  tconv = lambda w: np.transpose(w, (2, 3, 0, 1))[::-1, ::-1]  # [in, out, kh, kw] -> flipped HWIO
  keep = lambda a: a
  plan = []
  for j in range(1, 6):
    plan += [
      (f"conv{j}.weight", ("params", f"conv{j}", "kernel"), conv),
      (f"conv{j}.bias", ("params", f"conv{j}", "bias"), keep),
      (f"t_conv{j}.weight", ("params", f"t_conv{j}", "kernel"), tconv),
      (f"t_conv{j}.bias", ("params", f"t_conv{j}", "bias"), keep),
    ]
  params = variables.get("params", {})
  norms = [(f"bn{j}", f"bn{j}") for j in range(6)]
  if "dec_bn1" in params:  # share_norms=False: the decoder's own norms are copies of the shared ones
    norms += [(f"bn{4 - j}", f"dec_bn{j + 1}") for j in range(4)]
  for src, dst in norms:
    mean, var = keep, keep
    if src == "bn0" and original_inference:
      mean = lambda m: 2.0 * m - 1.0
      var = lambda v: 4.0 * (v + epsilon) - epsilon
    plan += [
      (f"{src}.weight", ("params", dst, "scale"), keep),
      (f"{src}.bias", ("params", dst, "bias"), keep),
      (f"{src}.running_mean", ("batch_stats", dst, "mean"), mean),
      (f"{src}.running_var", ("batch_stats", dst, "var"), var),
    ]
  return map_state_dict(variables, canon, plan, model="KeyframeAE")


def load_original_weights(
  path: str | Path, model: KeyframeAE | None = None, *, original_inference: bool = False
) -> dict:
  """Flax variables of `model` (default: the faithful `KeyframeAE(share_norms=True)`) from a weights
  file (`.pth`/`.pt` without torch, `.npz`, `.safetensors`), e.g. `MS_SSIM_L1-epoch-50.pth`.

  `original_inference` as in `load_torch_state_dict`. Raises FileNotFoundError or a one-line
  ValueError (unreadable file, missing / unexpected / mis-shaped key).
  """
  model = KeyframeAE(share_norms=True) if model is None else model
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False))
  return load_torch_state_dict(
    shapes, load_state_dict(path), original_inference=original_inference, epsilon=model.epsilon
  )
