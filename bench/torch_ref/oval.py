"""PyTorch reference of the OVAL autoencoder (isidorjkaplan/OVAL `model.py`, final conv_settings).

NCHW with natural (H, W) axes: Conv2d 3-6-8-9-10-10 (k 3,3,4,3,3; s 1,2,1,3,2; padding 0, ReLU
between), mirrored ConvTranspose2d with sigmoid; 6,991 parameters. `output_padding` per layer
makes the decoder return exactly the input size, as `aejax.models.oval.OVAL(exact_output=True)`.
`load_flax_params` copies an aejax parameter tree in, so both sides compute the same loss. Only
the benchmark imports it (torch is in bench/requirements.txt, not in the library's).
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


class OVAL(nn.Module):

  def __init__(self, size=(360, 480)):
    super().__init__()
    ins = (3, *FEATURES[:-1])
    self.enc = nn.ModuleList(nn.Conv2d(c, f, k, s) for c, f, k, s in zip(ins, FEATURES, KERNELS, STRIDES))
    sizes = _sizes(size)[::-1]
    outs = (*FEATURES[-2::-1], 3)
    layers = []
    for j, (f, k, s) in enumerate(zip(outs, KERNELS[::-1], STRIDES[::-1])):
      c = FEATURES[-1] if j == 0 else outs[j - 1]
      natural = [(sizes[j][a] - 1) * s + k for a in range(2)]
      pad = tuple(sizes[j + 1][a] - natural[a] for a in range(2))
      layers.append(nn.ConvTranspose2d(c, f, k, s, output_padding=pad))
    self.dec = nn.ModuleList(layers)

  def forward(self, x):
    for i, conv in enumerate(self.enc):
      x = conv(x)
      if i < len(self.enc) - 1:
        x = torch.relu(x)
    for j, deconv in enumerate(self.dec):
      x = deconv(x)
      if j < len(self.dec) - 1:
        x = torch.relu(x)
    return x  # logits


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
