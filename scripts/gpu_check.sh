#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go: the tests marked `gpu` and the training benchmark
# (Unsloth against PEFT) on a random model of the demo student's shape. Nothing is downloaded.
#
#     bash scripts/gpu_check.sh            # writes its log to $OUT/log (default /tmp/gpu-check)
#
# Where the Python packages the GPU machine lacks were packed beside it (.gpu/site.tar.xz, as for
# the device tool of this project's workplace), they are unpacked to /tmp/site first. On the H200
# of 2026-12-04 those were unsloth and unsloth_zoo 2026.10.9, bitsandbytes 0.50.2 (its CUDA 13.0
# library only), trl 1.15.0, datasets 4.3.0, gguf, torchao, cut_cross_entropy, tyro, pydantic and
# their small dependencies, fetched here with `pip download --no-deps` (12 MB packed).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if [ -f .gpu/site.tar.xz ]; then
    mkdir -p /tmp/site && tar -xJf .gpu/site.tar.xz -C /tmp/site
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1 PYTHONUNBUFFERED=1
{
    date -u
    nvidia-smi -L
    $PY -c "import torch, transformers, peft, accelerate; print('torch', torch.__version__, \
'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'peft', peft.__version__)"
    $PY -c "import unsloth; print('unsloth', unsloth.__version__)" 2>&1 | tail -3
    echo "== tests marked gpu"
    timeout 280 $PY -m pytest -m gpu -v -rs -p no:cacheprovider tests/test_train_gpu.py \
        tests/test_backend_vllm.py tests/test_train_distributed.py
    echo "== benchmark: LoRA training, a random model of Qwen2.5-Coder-0.5B's shape"
    $PY tests/random_model.py /tmp/random-0.5b --shape 0.5b
    printf '[models.random-05b]\nbackend = "transformers"\npath = "/tmp/random-0.5b"\ncontext_length = 2048\n' \
        > /tmp/gpu-models.toml
    LOCALDISTILL_MODELS=/tmp/gpu-models.toml timeout 190 $PY scripts/bench_training.py \
        --student random-05b --backend both --steps 80
    date -u
} 2>&1 | tee "$OUT/log"
