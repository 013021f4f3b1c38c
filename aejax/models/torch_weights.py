"""Reading weight files into `{name: np.ndarray}` state dicts, without torch.

`load_state_dict(path)` reads PyTorch's `.pth` / `.pt` zip archives (what `torch.save` writes
since torch 1.6), `.npz` and `.safetensors`. The `.pth` reader is a restricted unpickler: it
rebuilds tensors (`torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`) from the archive's
storages as NumPy arrays and accepts nothing else beyond plain containers (`OrderedDict`, dict,
list, tuple, numbers, strings), so a file cannot run code, and a pickled `nn.Module` or optimizer
object is refused with a one-line error naming the file. Users install aejax without torch.

A state dict wrapped in a dict (`{"model_state_dict": ...}`, `{"state_dict": ...}`, ...) is
unwrapped, and a `module.` prefix (from `nn.DataParallel`) is removed.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["load_state_dict", "map_state_dict", "read_pth", "to_numpy", "unwrap_state_dict"]

# Storage class names as torch pickles them -> element dtype.
_STORAGE_DTYPES = {
  "DoubleStorage": np.float64,
  "FloatStorage": np.float32,
  "HalfStorage": np.float16,
  "LongStorage": np.int64,
  "IntStorage": np.int32,
  "ShortStorage": np.int16,
  "CharStorage": np.int8,
  "ByteStorage": np.uint8,
  "BoolStorage": np.bool_,
  "UntypedStorage": np.uint8,
}
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "params", "module")


def _bfloat16():
  import ml_dtypes  # a JAX dependency

  return ml_dtypes.bfloat16


class _StorageType:
  """Stands in for `torch.FloatStorage` & co. in the pickle: only its dtype matters."""

  def __init__(self, name: str):
    self.name = name

  @property
  def dtype(self):
    return _bfloat16() if self.name == "BFloat16Storage" else np.dtype(_STORAGE_DTYPES[self.name])


def _rebuild_tensor_v2(
  storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
  """`torch._utils._rebuild_tensor_v2` for NumPy: a strided view of the storage, copied."""
  del requires_grad, backward_hooks, metadata
  itemsize = storage.dtype.itemsize
  if not size:
    return np.array(storage[storage_offset])
  view = np.lib.stride_tricks.as_strided(
    storage[storage_offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
  )
  return np.array(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
  """`torch._utils._rebuild_parameter(_with_state)`: a Parameter is its data here."""
  del requires_grad, backward_hooks, state
  return data


_GLOBALS = {
  ("collections", "OrderedDict"): OrderedDict,
  ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
  ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
  ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
  """Rebuilds a torch zip archive's `data.pkl` with NumPy storages; refuses any other global."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: Path, byteorder: str):
    super().__init__(file)
    self._archive, self._prefix, self._path, self._byteorder = archive, prefix, path, byteorder
    self._storages: dict[str, np.ndarray] = {}

  def find_class(self, module, name):
    if (module, name) in _GLOBALS:
      return _GLOBALS[(module, name)]
    if module in ("torch", "torch.storage") and (name in _STORAGE_DTYPES or name == "BFloat16Storage"):
      return _StorageType(name)
    raise pickle.UnpicklingError(
      f"{self._path}: holds {module}.{name}, not a plain state dict of tensors (save "
      "`model.state_dict()` instead of the model, or convert the file to .safetensors)"
    )

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"{self._path}: unknown persistent id {pid!r:.60}")
    _, storage_type, key, _location, _numel = pid
    if key not in self._storages:
      dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else np.dtype(np.uint8)
      raw = self._archive.read(f"{self._prefix}/data/{key}")
      order = "<" if self._byteorder == "little" else ">"
      if dtype == _bfloat16():  # read as 16-bit words in the file's byte order
        arr = np.frombuffer(raw, np.dtype(np.uint16).newbyteorder(order)).astype(np.uint16).view(dtype)
      else:
        arr = np.frombuffer(raw, np.dtype(dtype).newbyteorder(order)).astype(dtype)
      self._storages[key] = arr
    return self._storages[key]


def read_pth(path: str | Path):
  """Reads a `torch.save` zip archive (`.pth` / `.pt`) without torch; tensors become NumPy arrays.

  Returns the pickled object (usually an `OrderedDict` state dict). Raises ValueError (one line,
  naming the file) for a legacy (pre-1.6) file, a pickled module or any non-tensor class.
  """
  path = Path(path)
  if not zipfile.is_zipfile(path):
    raise ValueError(
      f"{path}: not a torch zip archive (a legacy pre-1.6 torch.save file?); re-save it "
      "with a recent torch or convert it to .safetensors / .npz"
    )
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
      raise ValueError(f"{path}: no single <archive>/data.pkl in the zip file ({len(pkl)} found)")
    prefix = pkl[0][: -len("/data.pkl")]
    byteorder = "little"
    if f"{prefix}/byteorder" in names:
      byteorder = archive.read(f"{prefix}/byteorder").decode().strip()
    with archive.open(pkl[0]) as f:
      try:
        return _Unpickler(f, archive, prefix, path, byteorder).load()
      except pickle.UnpicklingError as e:
        raise ValueError(str(e)) from None
      except (KeyError, EOFError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: unreadable torch archive ({type(e).__name__}: {e})") from None


def to_numpy(value) -> np.ndarray:
  """A NumPy array from a NumPy array, a JAX array or a torch tensor (detached, on the host)."""
  if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing torch
    value = value.detach().cpu()
    if str(value.dtype) == "torch.bfloat16":
      value = value.float()
    return value.numpy()
  return np.asarray(value)


def unwrap_state_dict(obj, path: str | Path = "state dict") -> dict:
  """The `{name: tensor}` mapping inside `obj`.

  Unwraps `{"state_dict": {...}}`-style checkpoints (also `model_state_dict`, `model`, `net`,
  `params`, `module`), keeps only array-like values and drops a `module.` prefix common to all
  names. Raises ValueError (one line, naming `path`) when there is no such mapping.
  """
  for _ in range(3):
    if not isinstance(obj, Mapping) or any(hasattr(v, "shape") for v in obj.values()):
      break
    inner = [k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)]
    if not inner:
      break
    obj = obj[inner[0]]
  if not isinstance(obj, Mapping):
    raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state dict of named tensors")
  out = {str(k): v for k, v in obj.items() if hasattr(v, "shape")}
  if not out:
    raise ValueError(f"{path}: no tensors found (top-level keys {list(obj)[:5]})")
  if all(k.startswith("module.") for k in out):
    out = {k[len("module.") :]: v for k, v in out.items()}
  return out


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
  """Reads `{name: np.ndarray}` from a `.pth` / `.pt` (no torch needed), `.npz` or `.safetensors` file.

  Raises:
    FileNotFoundError: no such file.
    ValueError: an unknown suffix, or a file that is not a plain state dict (one line naming it).
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such weights file")
  suffix = path.suffix.lower()
  if suffix == ".safetensors":
    from safetensors.numpy import load_file

    obj = load_file(str(path))
  elif suffix == ".npz":
    with np.load(path, allow_pickle=False) as z:
      obj = {k: z[k] for k in z.files}
  elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
    obj = read_pth(path)
  else:
    raise ValueError(f"{path}: unknown weights format {suffix!r} (use .pth/.pt, .npz or .safetensors)")
  return {k: to_numpy(v) for k, v in unwrap_state_dict(obj, path).items()}


Plan = Sequence[tuple[str, tuple[str, ...], Callable[[np.ndarray], np.ndarray]]]


def map_state_dict(
  variables: Mapping, state_dict: Mapping[str, np.ndarray], plan: Plan, *, model: str
) -> dict:
  """New Flax variables: every leaf of `variables` from one state-dict entry, as `plan` says.

  Args:
    variables: the model's variables (arrays or `jax.ShapeDtypeStruct` leaves; only shapes and
      dtypes are read), e.g. `{"params": ..., "batch_stats": ...}`.
    state_dict: torch names -> arrays or torch tensors (aliases already resolved by the caller).
    plan: `(torch name, variable path, convert)` for every leaf; `convert` maps the torch array
      to our layout. Several entries may read the same torch name.
    model: the model's name for error messages.

  Returns:
    `{"params": ..., ...}` of host NumPy arrays in the template's dtypes.

  Raises:
    ValueError: one line naming the key: missing, unexpected, or of the wrong shape, or a model
      variable the plan does not fill.
  """
  from flax import traverse_util

  flat = traverse_util.flatten_dict(dict(variables))
  used, out = set(), {}
  for key, path, convert in plan:
    if key not in state_dict:
      raise ValueError(f"{model}: the state dict lacks {key!r} (for {'/'.join(path)})")
    if path not in flat:
      raise ValueError(
        f"{model}: {key!r} has no place in this model (no variable {'/'.join(path)}; another configuration?)"
      )
    raw = to_numpy(state_dict[key])
    value = np.asarray(convert(raw))
    want = tuple(flat[path].shape)
    if value.shape != want:
      raise ValueError(
        f"{model}: {key!r} has shape {raw.shape}, which does not fit "
        f"{'/'.join(path)} {want} (another configuration?)"
      )
    out[path] = np.asarray(value, flat[path].dtype)
    used.add(key)
  extra = [k for k in state_dict if k not in used]
  if extra:
    raise ValueError(
      f"{model}: unexpected key {extra[0]!r} in the state dict"
      + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
    )
  unfilled = [p for p in flat if p not in out]
  if unfilled:
    raise ValueError(
      f"{model}: no state-dict entry fills {'/'.join(unfilled[0])}"
      + (f" (and {len(unfilled) - 1} more)" if len(unfilled) > 1 else "")
    )
  return traverse_util.unflatten_dict(out)
