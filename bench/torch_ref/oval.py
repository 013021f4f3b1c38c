"""PyTorch reference of the OVAL autoencoder (isidorjkaplan/OVAL `model.py`, final conv_settings).

NCHW: Conv2d 3-6-8-9-10-10 (k 3,3,4,3,3; s 1,2,1,3,2; padding 0, ReLU between), mirrored
ConvTranspose2d with sigmoid; 6,991 parameters, under the original's module names (its released
state dicts load as they are). `output_padding` per layer (`exact_output`, the default) makes the
decoder return exactly the input size, as `aejax.models.oval.OVAL(exact_output=True)`.
`load_flax_params` copies an aejax parameter tree in, so both sides compute the same loss. Only
the benchmark and the tests import it (torch is in bench/requirements.txt, not in the library's).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

FEATURES, KERNELS, STRIDES = (6, 8, 9, 10, 10), (3, 3, 4, 3, 3), (1, 2, 1, 3, 2)


def _sizes(size):
  out = [tuple(size)]
  for k, s in zip(KERNELS, STRIDES):
    h, w = out[-1]
    out.append(((h - k) // s + 1, (w - k) // s + 1))
  return out


class _Stack(nn.Module):
  """The original's `Encoder` / `Decoder` as far as weights go: one `conv_net` Sequential."""

  def __init__(self, layers):
    super().__init__()
    self.conv_net = nn.Sequential(*layers)

  def forward(self, x):
    return self.conv_net(x)


class OVAL(nn.Module):
  """The faithful OVAL autoencoder; `forward` returns the decoder's logits (pre-sigmoid).

  Module names are the original's (`encoder.conv_net.{0,2,4,6,8}`, `decoder.conv_net.{0,2,4,6,8}`,
  ReLUs at the odd indices), so `load_state_dict(torch.load("offline8.pt"))` works with
  `strict=True`. `size` is the frame's (H, W) in the tensor's layout (the original fed
  [N, C, W, H], i.e. size (480, 360)). `exact_output` adds the `output_padding` that makes the
  decoder return exactly `size` (as `aejax.models.oval.OVAL(exact_output=True)`); without it the
  decoder is the original's (351x471 for 360x480).
  """

  def __init__(self, size=(360, 480), exact_output: bool = True):
    super().__init__()
    ins = (3, *FEATURES[:-1])
    enc = []
    for i, (c, f, k, s) in enumerate(zip(ins, FEATURES, KERNELS, STRIDES)):
      enc += [nn.ReLU()] if i else []
      enc.append(nn.Conv2d(c, f, k, s))
    self.encoder = _Stack(enc)
    sizes = _sizes(size)[::-1]
    outs = (*FEATURES[-2::-1], 3)
    dec = []
    for j, (f, k, s) in enumerate(zip(outs, KERNELS[::-1], STRIDES[::-1])):
      c = FEATURES[-1] if j == 0 else outs[j - 1]
      natural = [(sizes[j][a] - 1) * s + k for a in range(2)]
      pad = tuple(sizes[j + 1][a] - natural[a] for a in range(2)) if exact_output else (0, 0)
      dec += [nn.ReLU()] if j else []
      dec.append(nn.ConvTranspose2d(c, f, k, s, output_padding=pad))
    self.decoder = _Stack(dec)

  @property
  def enc(self):
    """The encoder's convolutions, in order."""
    return [m for m in self.encoder.conv_net if isinstance(m, nn.Conv2d)]

  @property
  def dec(self):
    """The decoder's transposed convolutions, in order."""
    return [m for m in self.decoder.conv_net if isinstance(m, nn.ConvTranspose2d)]

  def forward(self, x):
    return self.decoder(self.encoder(x))  # logits


def load_flax_params(model: OVAL, params) -> OVAL:
  """Copies `OVAL` Flax params (enc0..4, dec0..4) into the torch module.

  Conv: [kh, kw, in, out] → [out, in, kh, kw]. Flax's ConvTranspose (transpose_kernel=False)
  correlates the dilated input with its kernel; PyTorch's is the gradient of a convolution, so
  its weight [in, out, kh, kw] is the spatially flipped Flax kernel.
  """
  with torch.no_grad():
    for i, conv in enumerate(model.enc):
      p = params[f"enc{i}"]
      conv.weight.copy_(torch.from_numpy(np.asarray(p["kernel"]).transpose(3, 2, 0, 1).copy()))
      conv.bias.copy_(torch.from_numpy(np.asarray(p["bias"])))
    for j, deconv in enumerate(model.dec):
      p = params[f"dec{j}"]
      k = np.asarray(p["kernel"])[::-1, ::-1]  # [kh, kw, in, out] flipped
      deconv.weight.copy_(torch.from_numpy(k.transpose(2, 3, 0, 1).copy()))
      deconv.bias.copy_(torch.from_numpy(np.asarray(p["bias"])))
  return model


def bce_loss(logits, target):
  return nn.functional.binary_cross_entropy_with_logits(logits, target)
