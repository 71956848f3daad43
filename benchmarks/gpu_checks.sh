#!/usr/bin/env bash
# The checks a lent GPU machine runs (one NVIDIA H100 or H200, 16 cores, no package index there):
# the CUDA tests the suite skips on CI, then the TomOpt side by side with mutomo on the GPU
# (TomOpt on the CPU, where its own code pins it: tomopt.core.DEVICE) at 1e4, 1e5 and 1e6 muons,
# plain and compiled kernels. Results land in $OUT (default /tmp/gpu-checks); the JSON record is
# copied by hand to benchmarks/results/tomopt_side_by_side_gpu/.
#
# The machine's python3 holds torch (with CUDA), numpy, h5py, yaml, tqdm, pandas, seaborn,
# matplotlib and pytest; what mutomo and TomOpt need beside them travels as wheels in .whl/
# (ignored by git), fetched on a machine with an index, for CPython 3.12:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 -d .whl pydantic==2.14.4 pydantic_core==2.50.5 \
#     annotated-types==0.8.0 typing-inspection==0.4.5 periodictable==2.1.0 tomopt==0.1.0 \
#     fastcore fastprogress==1.0.0 particle==0.23.1 hepunits prettytable wcwidth mypy_extensions
# (fastcore: TomOpt pins 1.3.20, which imports distutils, gone in Python 3.12; TomOpt only uses its
# Path, which 2.x keeps.) MUTOMO_COMMIT names the commit the copy was made from (no .git travels).
set -u
OUT=${OUT:-/tmp/gpu-checks}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/unit/test_device_dtype.py tests/unit/test_mlem.py -k cuda 2>&1 | tee "$OUT/cuda_tests.txt"
timeout "${SIDE_BY_SIDE_TIMEOUT:-330}" python3 benchmarks/tomopt_side_by_side.py --device cuda --muons ${MUONS:-10000 100000 1000000} \
  --threads 1 --repeats 3 --tomopt-repeats 1 --tomopt-max-muons 10000 --tomopt-python python3 \
  --kernels plain compiled --json "$OUT/side_by_side_gpu.json" 2>&1 | tee "$OUT/side_by_side_gpu.txt"
