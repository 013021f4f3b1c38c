"""OVAL: the small convolutional video-compression autoencoder (with an optional ConvLSTM).

I. Kaplan et al., "OVAL: Online Video compression using Autoencoder Learning" (APS360, University
of Toronto, 2022; github.com/isidorjkaplan/OVAL, `model.py` at a11f99a). The faithful stack
(`FAITHFUL`), NHWC with natural (H, W) axes (the original transposed frames to (W, H); kernels are
square and strides symmetric, so only weight porting cares):

  encoder  conv 3->6 k3 s1, ReLU | 6->8 k3 s2, ReLU | 8->9 k4 s1, ReLU | 9->10 k3 s3, ReLU |
           10->10 k3 s2 (no activation: the latent z, [B, 28, 38, 10] for 360x480 frames)
  decoder  conv-transpose 10->10 k3 s2, ReLU | 10->9 k3 s3, ReLU | 9->8 k4 s1, ReLU |
           8->6 k3 s2, ReLU | 6->3 k3 s1, sigmoid

All convolutions are 'VALID' with biases (PyTorch's default U(+-1/sqrt(fan_in)) init); 6,991
parameters (encoder 3,499, decoder 3,492). The original decoder returned 351x471 for a 360x480
frame; here every transposed convolution adds the output padding that makes it invert its
encoder layer's size exactly (`exact_output=True`), so the decoder returns exactly the input size
for any frame size (`exact_output=False` reproduces the original's 351x471).

`use_lstm` adds the original's `--lstm` option: one ConvLSTM (hidden 10, 3x3, gates i, f, o, g from
one conv over [x, h]; 7,240 parameters) after the encoder stack and one before the decoder stack
(21,471 parameters in all); the transmitted code is then the encoder's h in (-1, 1). Inputs are
frame sequences [B, T, H, W, 3] scanned over T with `nn.scan` (one `lax.scan`), the (h, c) carry
passed in and returned so a stream can continue across calls, and `tbptt=K` cutting the gradient
through the carry every K frames (truncated backpropagation through time).

The released weights (`results/offline/03_13_v2/save2/offline8.pt` and siblings) load with
`load_original_weights(path)` / `load_torch_state_dict(variables, state_dict)`, mapping two
quirks of the original: it read BGR frames and laid them out [N, C, W, H], so its kernels' spatial
axes are swapped relative to ours and its first / last layers' channels are in BGR order. With
`exact_output=False` the result equals the original to ~2e-6 (tests/test_original_weights.py); with
the default `exact_output=True` only the bottom and right 18 rows and columns of a 360x480 frame
differ (the added output padding).

`V2` is ours, not the original's: the same class as a learned transform codec, here one 8x8 block
transform started as a DCT (`transform_init`, linear `output`), with a learned factorized latent
density (`density_filters`) and a rate term (`rate_lambda`); the options also build Balle-2018-style
stacks (`activation="gdn"`: GDN / IGDN from `aejax.models.rd_layers`, `pad_mode="edge"`). The
ConvLSTM is `aejax.models.convlstm`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from aejax.models.convlstm import ConvLSTM
from aejax.models.layers import torch_uniform_init
from aejax.models.rd_layers import GDN, FactorizedDensity, block_transform_inits
from aejax.models.torch_weights import load_state_dict, map_state_dict

FAITHFUL = dict(features=(6, 8, 9, 10, 10), kernels=(3, 3, 4, 3, 3), strides=(1, 2, 1, 3, 2))
# Ours: a learned 8x8 block transform (one 8x8 stride-8 layer each way, 192 channels, started as a
# DCT of opponent colours, linear output) + a learned latent density, loss MSE + rate_lambda * bpp.
# (A deep GDN stack, activation="gdn", reached only ~17 dB in the CPU-minutes we had.)
V2 = dict(
  features=(192,),
  kernels=(8,),
  strides=(8,),
  transform_init="dct",
  transform_gain=4.0,
  output="linear",
  pad_mode="edge",
  density_filters=(3, 3, 3),
  rate_lambda=0.005,
)
PRESETS = {"faithful": FAITHFUL, "v2": V2}


def conv_out(n: int, k: int, s: int) -> int:
  """Output length of a 'VALID' convolution (PyTorch padding 0)."""
  return (n - k) // s + 1


def layer_sizes(size: Sequence[int], kernels: Sequence[int], strides: Sequence[int]) -> list[tuple]:
  """(H, W) before every encoder layer and of the latent: len(kernels) + 1 entries.

  Raises:
    ValueError: when a frame is too small for the stack.
  """
  sizes = [tuple(int(v) for v in size)]
  for k, s in zip(kernels, strides):
    h, w = sizes[-1]
    if min(h, w) < k:
      raise ValueError(
        f"OVAL: a {size[0]}x{size[1]} frame is too small for the conv stack "
        f"(a {h}x{w} map meets a {k}x{k} kernel)"
      )
    sizes.append((conv_out(h, k, s), conv_out(w, k, s)))
  return sizes


def latent_shape(
  size: Sequence[int],
  features: Sequence[int] = FAITHFUL["features"],
  kernels: Sequence[int] = FAITHFUL["kernels"],
  strides: Sequence[int] = FAITHFUL["strides"],
) -> tuple[int, int, int]:
  """The latent (h, w, C) of a frame of `size` (H, W)."""
  return (*layer_sizes(size, kernels, strides)[-1], features[-1])


def _init(fan_in: int) -> dict:
  return dict(kernel_init=torch_uniform_init(fan_in), bias_init=torch_uniform_init(fan_in))


class OVAL(nn.Module):
  """The OVAL autoencoder: frames in [0, 1] → latent z → frames in [0, 1] of the same size.

  Attributes:
    features: encoder output channels per layer; the last is the latent's channels.
    kernels, strides: encoder kernel sizes and strides (the decoder mirrors them).
    image_channels: channels of the frames (3).
    exact_output: pad the decoder so it returns exactly the input size (else the original's
      smaller output, e.g. 351x471 for 360x480).
    use_lstm: the ConvLSTM option; inputs are then [B, T, H, W, C] sequences.
    tbptt: with `use_lstm`, cut the gradient through the carry every this many frames (0: never).
    activation: "relu" (the original's) or "gdn" (GDN in the encoder, IGDN in the decoder).
    pad_mode: with `exact_output`, the decoder's added rows and columns hold the layer's bias
      ("bias", as PyTorch's `output_padding`) or repeat the last ones ("edge").
    density_filters: non-empty: a learned factorized density of the latent (`FactorizedDensity`
      with these hidden widths); the forward pass then adds uniform noise U(-1/2, 1/2) to the
      latent in training (rounds it otherwise) and returns its likelihoods.
    rate_lambda: the rate term's weight in training: loss = distortion + rate_lambda * bits per
      pixel (`aejax.codec.oval_train.make_loss_fn`; MSE on the [0, 1] scale for the v2 preset).
    transform_init: "torch" (PyTorch's default uniform) or "dct": the first encoder layer and the last
      decoder layer (k x k, stride k, 3 k^2 channels) start as an orthonormal block DCT of
      opponent colours times `transform_gain` and its inverse (`rd_layers.block_transform_inits`).
    output: "sigmoid" (the original's) or "linear" (the decoder's last layer as is; clipped to
      [0, 1] by the codec).
  """

  features: Sequence[int] = FAITHFUL["features"]
  kernels: Sequence[int] = FAITHFUL["kernels"]
  strides: Sequence[int] = FAITHFUL["strides"]
  image_channels: int = 3
  exact_output: bool = True
  use_lstm: bool = False
  tbptt: int = 0
  activation: str = "relu"
  pad_mode: str = "bias"
  density_filters: Sequence[int] = ()
  rate_lambda: float = 0.0
  transform_init: str = "torch"
  transform_gain: float = 4.0
  output: str = "sigmoid"
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    """Builds the encoder and decoder stacks (validating the layer lists)."""
    if not len(self.features) == len(self.kernels) == len(self.strides):
      raise ValueError(
        "OVAL: features, kernels and strides need the same length, got "
        f"{len(self.features)}, {len(self.kernels)}, {len(self.strides)}"
      )
    ins = (self.image_channels, *self.features[:-1])
    kw = dict(padding="VALID", dtype=self.dtype, param_dtype=self.param_dtype)
    inits = [_init(c * k * k) for c, k in zip(ins, self.kernels)]
    dec_last = _init(self.image_channels * self.kernels[0] ** 2)
    if self.transform_init == "dct":
      inits[0], dec_last = block_transform_inits(self.kernels[0], self.transform_gain)
    self.enc = [
      nn.Conv(f, (k, k), (s, s), name=f"enc{i}", **kw, **inits[i])
      for i, (f, k, s) in enumerate(zip(self.features, self.kernels, self.strides))
    ]
    # Decoder layer j inverts encoder layer n-1-j (mirrored channels, kernel, stride). PyTorch
    # ConvTranspose2d's fan_in is out_channels * k * k.
    outs = (*self.features[-2::-1], self.image_channels)
    self.dec_kernels = tuple(self.kernels[::-1])
    self.dec_strides = tuple(self.strides[::-1])
    self.dec = [
      nn.ConvTranspose(
        f,
        (k, k),
        (s, s),
        padding="VALID",
        name=f"dec{j}",
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        **(dec_last if j == len(self.features) - 1 else _init(f * k * k)),
      )
      for j, (f, k, s) in enumerate(zip(outs, self.dec_kernels, self.dec_strides))
    ]
    if self.activation not in ("relu", "gdn") or self.pad_mode not in ("bias", "edge"):
      raise ValueError(f"OVAL: activation {self.activation!r} / pad_mode {self.pad_mode!r} unknown")
    if self.activation == "gdn":
      n = len(self.features) - 1
      self.enc_gdn = [GDN(name=f"enc_gdn{i}") for i in range(n)]
      self.dec_gdn = [GDN(inverse=True, name=f"dec_igdn{j}") for j in range(n)]
    if self.density_filters:
      self.density = FactorizedDensity(self.features[-1], tuple(self.density_filters), name="density")
    if self.use_lstm:
      lk = dict(features=self.features[-1], tbptt=self.tbptt, dtype=self.dtype, param_dtype=self.param_dtype)
      self.enc_lstm = ConvLSTM(**lk, name="enc_lstm")
      self.dec_lstm = ConvLSTM(**lk, name="dec_lstm")

  def _frames(self, x):
    """[B, T, H, W, C] (LSTM; 4-D input is one sequence, as the original) or [N, H, W, C]."""
    if self.use_lstm:
      return x[None] if x.ndim == 4 else x
    if x.ndim == 5:
      return x.reshape(-1, *x.shape[2:])
    return x

  def encode(self, x, *, carry=None):
    """Frames [N, H, W, C] (or [B, T, H, W, C] with the LSTM) → (z, encoder carry or None)."""
    x = self._frames(jnp.asarray(x, self.dtype))
    lead = x.shape[:-3]
    h = x.reshape(-1, *x.shape[-3:])
    for i, conv in enumerate(self.enc):
      h = conv(h)
      if i < len(self.enc) - 1:
        h = self.enc_gdn[i](h) if self.activation == "gdn" else nn.relu(h)
    h = h.reshape(*lead, *h.shape[1:])
    if self.use_lstm:
      h, carry = self.enc_lstm(h, carry)
    return h, carry

  def decode(self, z, size: Sequence[int], *, carry=None, return_logits: bool = False):
    """Latent → (frames of `size` (H, W) in [0, 1], decoder carry or None).

    With `return_logits`, the frames are replaced by the pre-sigmoid logits.
    """
    sizes = layer_sizes(size, self.kernels, self.strides)[::-1]  # latent first
    if tuple(z.shape[-3:-1]) != sizes[0]:
      raise ValueError(
        f"OVAL.decode: a latent of {z.shape[-3]}x{z.shape[-2]} does not belong to a "
        f"{size[0]}x{size[1]} frame (expected {sizes[0][0]}x{sizes[0][1]})"
      )
    h = jnp.asarray(z, self.dtype)
    if self.use_lstm:
      h = h[None] if h.ndim == 4 else h
      h, carry = self.dec_lstm(h, carry)
      h = h.astype(self.dtype)
    lead = h.shape[:-3]
    h = h.reshape(-1, *h.shape[-3:])
    for j, deconv in enumerate(self.dec):
      h = deconv(h)  # 'VALID': (n - 1) s + k, as PyTorch's ConvTranspose2d with padding 0
      if self.exact_output:
        # Output padding on the bottom/right, as PyTorch's `output_padding`: rows and columns
        # past the kernel's reach, so they hold the bias alone (later layers mix them in).
        eh, ew = (sizes[j + 1][a] - h.shape[1 + a] for a in range(2))
        if (eh or ew) and self.pad_mode == "edge":
          h = jnp.pad(h, ((0, 0), (0, eh), (0, ew), (0, 0)), mode="edge")
        elif eh or ew:
          bias = deconv.variables["params"]["bias"].astype(h.dtype)
          h = jnp.pad(h - bias, ((0, 0), (0, eh), (0, ew), (0, 0))) + bias
      if j < len(self.dec) - 1:
        h = self.dec_gdn[j](h) if self.activation == "gdn" else nn.relu(h)
    logits = h.astype(jnp.float32).reshape(*lead, *h.shape[1:])
    return (logits if return_logits else self.activate(logits)), carry

  def activate(self, logits):
    """The frames of the decoder's last layer: sigmoid(logits), or the logits (`output="linear"`)."""
    return logits if self.output == "linear" else nn.sigmoid(logits)

  def __call__(self, x, *, train: bool = False, carry=None):
    """Frames → (reconstruction in [0, 1], aux).

    Args:
      x: [N, H, W, C] frames in [0, 1] (with `use_lstm`: [B, T, H, W, C] sequences).
      train: with `density_filters`, add uniform noise to the latent (an rng stream "noise"
        must be given) instead of rounding it; otherwise unused.
      carry: with `use_lstm`, `(encoder carry, decoder carry)` from the previous call.

    Returns:
      (y of x's shape (or the original's smaller size when not `exact_output`),
       aux dict: `z` the latent, `logits` the pre-sigmoid output, `carry` the new carries or None;
       with `density_filters` also `likelihoods` of the noisy / rounded latent that was decoded).
    """
    enc_carry, dec_carry = carry if carry is not None else (None, None)
    x = self._frames(x)
    z, enc_carry = self.encode(x, carry=enc_carry)
    aux = {"z": z}
    if self.density_filters:
      if train:
        z = z + jax.random.uniform(self.make_rng("noise"), z.shape, z.dtype, -0.5, 0.5)
      else:
        z = jnp.round(z)
      aux["likelihoods"] = self.density(z)
    logits, dec_carry = self.decode(z, x.shape[-3:-1], carry=dec_carry, return_logits=True)
    new_carry = (enc_carry, dec_carry) if self.use_lstm else None
    return self.activate(logits), {**aux, "logits": logits, "carry": new_carry}

  def latent_pmf(self, step: float = 1.0, radius: int = 255):
    """The learned density tabulated for a quantiser `step` (`FactorizedDensity.pmf_grid`)."""
    return self.density.pmf_grid(step, radius)


def split_params(params: dict) -> tuple[dict, dict]:
  """(sender's encoder params, receiver's decoder params): what each end of a link holds."""
  enc = {k: v for k, v in params.items() if k.startswith("enc")}
  dec = {k: v for k, v in params.items() if k.startswith("dec")}
  return enc, dec


LOSSES = ("bce", "mse", "mae", "ms_ssim")


def reconstruction_loss(name: str, logits, target, output: str = "sigmoid") -> jax.Array:
  """The training loss on the decoder's logits against targets in [0, 1] (float32, mean).

  "bce" (the original's; from logits, numerically stable), "mse", "mae" or "ms_ssim"
  (1 - MS-SSIM; NHWC, or [B, T, H, W, C] flattened over B and T) on the frames the model outputs:
  sigmoid(logits), or the logits themselves for `output="linear"` (`OVAL.output`).
  """
  from aejax import losses, metrics

  logits = jnp.asarray(logits, jnp.float32)
  target = jnp.asarray(target, jnp.float32)
  if name == "bce":
    return losses.bce_with_logits(logits, target)
  y = logits if output == "linear" else nn.sigmoid(logits)
  if name == "mse":
    return losses.mse(y, target)
  if name == "mae":
    return losses.mae(y, target)
  if name == "ms_ssim":
    flat = lambda a: a.reshape(-1, *a.shape[-3:])
    return 1.0 - jnp.mean(metrics.ms_ssim(flat(y), flat(target)))
  raise ValueError(f"unknown OVAL loss {name!r}; use one of {LOSSES}")


def load_torch_state_dict(
  variables: Mapping, state_dict: Mapping, *, channels: str = "rgb", swap_hw: bool = True
) -> dict:
  """The original's state dict (`encoder.conv_net.{0,2,..}`, `decoder.conv_net.{0,2,..}`) -> our
  `OVAL` variables (new host arrays; non-LSTM models of any `features` / `kernels`).

  Conv weights [out, in, kA, kB] -> kernels [kh, kw, in, out]; transposed-conv weights
  [in, out, kA, kB] -> kernels flipped in both spatial axes (Flax's `ConvTranspose` correlates,
  PyTorch's is the gradient of a convolution). Strides are not in a state dict: `variables` must
  come from a model with the original's strides (`FAITHFUL` for offline8.pt).

  Args:
    variables: our model's variables (or their `jax.eval_shape`), `{"params": ...}`.
    state_dict: torch names -> torch tensors or NumPy arrays.
    channels: "rgb" (default): the first layer's input and the last layer's output channels are
      reversed so our model reads and writes RGB frames (`data.color_space="rgb"`) and computes
      exactly what the original computed on the BGR frames; "bgr": kept in the original's order
      (feed BGR, `data.color_space="bgr"`).
    swap_hw: the original fed frames laid out [N, C, W, H] (`permute(0, 3, 2, 1)`), so a kernel's
      first spatial axis ran along the width; True (default) swaps the kernels' spatial axes so
      our model takes natural [N, H, W, C] frames (a 360x480 frame for the original's 480x360
      `img_size`). Kernels are square and strides symmetric, so this is exact. False for weights
      trained on [N, C, H, W] frames.

  Raises:
    ValueError: an unknown `channels`, or one line naming a missing, unexpected or mis-shaped key.
  """
  if channels not in ("rgb", "bgr"):
    raise ValueError(f"OVAL: channels must be 'rgb' or 'bgr', got {channels!r}")
  params = variables.get("params", {})
  n_enc = sum(1 for k in params if k.startswith("enc") and k[3:].isdigit())
  n_dec = sum(1 for k in params if k.startswith("dec") and k[3:].isdigit())
  hw = (3, 2) if swap_hw else (2, 3)
  flip = channels == "rgb"
  rgb_in = lambda k: k[:, :, ::-1] if flip else k  # the first conv's input channels
  rgb_out = lambda k: k[..., ::-1] if flip else k  # the last layer's output channels (and bias)
  conv = lambda w: np.transpose(w, (*hw, 1, 0))  # [out, in, kA, kB] -> [kh, kw, in, out]
  tconv = lambda w: np.transpose(w, (*hw, 0, 1))[::-1, ::-1]  # [in, out, kA, kB] -> flipped HWIO
  keep = lambda a: a
  plan = []
  for i in range(n_enc):
    plan += [
      (
        f"encoder.conv_net.{2 * i}.weight",
        ("params", f"enc{i}", "kernel"),
        (lambda w: rgb_in(conv(w))) if i == 0 else conv,
      ),
      (f"encoder.conv_net.{2 * i}.bias", ("params", f"enc{i}", "bias"), keep),
    ]
  for j in range(n_dec):
    last = j == n_dec - 1
    plan += [
      (
        f"decoder.conv_net.{2 * j}.weight",
        ("params", f"dec{j}", "kernel"),
        (lambda w: rgb_out(tconv(w))) if last else tconv,
      ),
      (f"decoder.conv_net.{2 * j}.bias", ("params", f"dec{j}", "bias"), rgb_out if last else keep),
    ]
  return map_state_dict(variables, state_dict, plan, model="OVAL")


def load_original_weights(
  path: str | Path, model: OVAL | None = None, *, channels: str = "rgb", swap_hw: bool = True
) -> dict:
  """Flax variables of `model` (default: the faithful `OVAL()`, exact-size output) from a weights
  file (`.pth`/`.pt` without torch, `.npz`, `.safetensors`), e.g. the original's `offline8.pt`.

  `channels` and `swap_hw` as in `load_torch_state_dict`. Raises FileNotFoundError or a one-line
  ValueError (unreadable file, missing / unexpected / mis-shaped key).
  """
  model = OVAL() if model is None else model
  k = max(model.kernels)
  size = (k * int(np.prod(model.strides)) * 2,) * 2  # big enough for any stack
  x = jnp.zeros((1, 1, *size, model.image_channels) if model.use_lstm else (1, *size, model.image_channels))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  return load_torch_state_dict(shapes, load_state_dict(path), channels=channels, swap_hw=swap_hw)
