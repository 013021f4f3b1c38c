#!/usr/bin/env bash
# The one prepared GPU check of issue 9: correctness first, then `python -m bench --gpu`.
#
# Runs on the device machine (see /work/.library/device/README.md and KINDS.md): its python3 is
# Python 3.12 with jax 0.11.x (CUDA 13 plugin), flax, optax, orbax, torch (CUDA), opencv-headless,
# pyarrow, chex, etils, absl, wrapt, ... but WITHOUT grain, array-record, portpicker, dm-pix, clu,
# ml-collections, tensorboardX, tensorflow-datasets and a few of their needs; nothing can be
# downloaded there. Bring those as wheels in `.whl/` (ignored by git) made here, once:
#
#   cd <repo root>; echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
#     -d .whl grain==0.2.18 array-record==0.8.6 portpicker==1.6.0 dm-pix==0.4.5 clu==0.0.12 \
#     ml-collections==1.1.0 tensorboardX==2.6.5 tensorflow-datasets==4.9.10 dm-tree==0.1.10 \
#     av==18.1.0 constriction==0.5.0 \   # av is ~40 MB: drop torch-only wheels first if .whl nears 64 MiB
#     simple-parsing==0.1.9 docstring-parser==0.18.0 tensorflow-metadata==1.21.0 \
#     googleapis-common-protos==1.76.0 termcolor==3.3.0 toml==0.10.2 immutabledict==4.3.1
#   python3 -m pip wheel --no-deps -w .whl promise==2.3     # sdist only: build the wheel here
#   du -sh .whl                                             # carried with the tree: 64 MiB in all
#
# (If pip finds no wheel for one of them, add `--platform manylinux_2_N_x86_64` for another N,
# e.g. 24, 31, 34, 35; keep one version of each.) Then, from a session whose task has a GPU:
#
#   run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=600)
#
# Budget: ~1 min set-up + pytest, then the bench with a 400 s budget (the SiamMAE and key-frame
# targets run first), ~8 min in all. Everything lands under $OUT (at most 8 files come back):
# env.txt, pytest.log, bench.log, rows.jsonl, RESULTS.md, logs.tgz (one log per workload).
# Back here, render the GPU table into this checkout's RESULTS.md (other sections untouched) and
# commit it:   python -m bench --gpu --from-json <files_at>/rows.jsonl && git commit ... bench/RESULTS.md
#
# 400 s will not hold every workload at the GPU sizes (compiles dominate): whatever was skipped for
# the budget shows as a "skipped" row. If device time is left, run the rest on the warm machine,
#   run(command='SKIP_PYTEST=1 BENCH_ARGS="--only oval vae vqae3d labelprop pipeline extract" '
#               'bash bench/gpu_check.sh', carry=[".whl"], timeout_s=600)
# save its rows.jsonl under another name, and merge both runs (the later one wins per workload):
#   python -m bench --gpu --from-json first/rows.jsonl second/rows.jsonl

set -u -o pipefail
OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
LOGS="$(mktemp -d)"
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl > "$OUT/env.txt" 2>&1 || { echo "wheel install failed"; cat "$OUT/env.txt"; }
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
else
  echo "no .whl/ carried: grain, clu, tfds, ... will be missing (see the comment at the top)" | tee "$OUT/env.txt"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"   # the package is not installed there: import it from the tree
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 XLA_PYTHON_CLIENT_PREALLOCATE=false

{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$PY" - <<'EOF'
import importlib
import jax
print("jax", jax.__version__, jax.devices())
for m in ("flax", "optax", "orbax.checkpoint", "torch", "grain", "dm_pix", "clu", "ml_collections",
          "tensorboardX", "tensorflow_datasets", "cv2"):
  try:
    mod = importlib.import_module(m)
    print(m, getattr(mod, "__version__", "?"))
  except Exception as e:  # noqa: BLE001
    print(m, "MISSING:", type(e).__name__, e)
import torch
print("torch cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
} >> "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# 1. Correctness on the GPU: the FLOP counter and a few fast model tests (conftest honours
#    JAX_PLATFORMS, so these run on CUDA); the loss-equality checks run inside each bench workload.
[ -n "${SKIP_PYTEST:-}" ] || JAX_PLATFORMS=cuda timeout 90 "$PY" -m pytest -q -x -p no:cacheprovider \
  tests/test_bench_common.py tests/test_vit.py tests/test_quantizers.py 2>&1 | tee "$OUT/pytest.log"
echo "pytest exit ${PIPESTATUS[0]}" | tee -a "$OUT/pytest.log"

# 2. The GPU-sized table (writes the Summary section of bench/RESULTS.md).
timeout 450 "$PY" -m bench --gpu --budget 400 --log-dir "$LOGS" --json "$OUT/rows.jsonl" \
  ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
echo "bench exit ${PIPESTATUS[0]}" | tee -a "$OUT/bench.log"
cp bench/RESULTS.md "$OUT/RESULTS.md"
tar czf "$OUT/logs.tgz" -C "$LOGS" . 2>/dev/null
ls -la "$OUT"
