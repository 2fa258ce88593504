#!/usr/bin/env bash
# The GPU checks, in one call on a lent GPU machine (its image has python3 with a CUDA torch and
# most of losslab's dependencies; nothing can be downloaded there). Under 8 minutes on one H100 (the timeouts add up to 8).
#
# Here, once, the wheels the image lacks (for its Python 3.12), into an ignored folder that the
# device call carries:
#   echo /.wheels/ >> .git/info/exclude
#   pip download -q -d .wheels --no-deps --only-binary=:all: --python-version 3.12 \
#       pydantic pydantic-core annotated-types typing-inspection plotly narwhals tomli-w schedulefree==1.4.1 \
#       curvlinops-for-pytorch==3.0.1 backpack-for-pytorch unfoldNd einconv hessian-eigenthings==1.0.0a5 \
#       pyhessian==0.1
# Then: device run with carry [".wheels"], command "bash benchmarks/gpu_check.sh".
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())"
python3 -m pip install -q --no-index --find-links .wheels --no-deps .wheels/*.whl
python3 -m pip install -q --no-deps --no-build-isolation -e .
# the tests that run on every device (CUDA here), then the library's own tests of the analyses
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_objective.py tests/test_hessian.py -k "cuda or not cpu"
# losslab's trainer on CUDA (train.device), its checkpoint loaded on the CPU, resumed; the Monitor's measures
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_train.py tests/test_monitor.py -k "device or cuda or monitor"
# the curvature benchmark on the GPU: top-5 eigenvalues against the peers, trace, plane
timeout 120 python3 benchmarks/bench_curvature.py --device cuda
# the Monitor's overhead in a plain CUDA loop
timeout 45 python3 benchmarks/bench_monitor.py --device cuda --steps 300 --repeats 1 --only cnn
# losslab's trainer on CUDA against a plain CUDA loop (grokking p = 97; the issue's goal: ratio <= 1.05)
timeout 45 python3 benchmarks/bench_trainer.py --device cuda --steps 300 --repeats 1
# the batched executor on CUDA against the local one: 32 parity runs, 16 grokking transformers
timeout 90 python3 benchmarks/bench_sweep.py --device cuda --workers 4 --parity-steps 300 --grokking-steps 200
