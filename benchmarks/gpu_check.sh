#!/usr/bin/env bash
# The CUDA checks of unlearn-peft in one command (benchmarks/gpu_check.py prints the table; under 8 minutes).
#
#   bash benchmarks/gpu_check.sh --prepare   # here, with the package index and the embedded SmolLM2 installed:
#                                            # writes .gpu_check/ (SmolLM2's tokenizer and config, and the wheels
#                                            # of the pinned versions a bare CUDA image lacks)
#   bash benchmarks/gpu_check.sh             # on the CUDA machine, from the repository root, with .gpu_check/
#                                            # next to it: installs those wheels into /tmp/site, runs the checks
#
# On a machine where `pip install -e .[quant]` already ran, the second command needs no .gpu_check/ at all.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
PREPARED=.gpu_check

# Pinned like CI (constraints.txt); pure-Python or manylinux x86_64 wheels for CPython 3.12.
# accelerate, safetensors and absl-py are in the CUDA image already; regex because transformers checks its version
# when imported, httpx2 / httpcore2 / truststore / click because huggingface_hub 2 needs them.
WHEELS=(transformers tokenizers huggingface_hub peft trl datasets dill multiprocess bitsandbytes rouge_score nltk
        regex click httpx2 httpcore2 truststore defusedxml)

pin() { grep -i -E "^$1==" constraints.txt | head -1; }

if [[ "${1:-}" == "--prepare" ]]; then
    rm -rf "$PREPARED" && mkdir -p "$PREPARED/wheels"
    grep -qx "/$PREPARED/" .git/info/exclude 2>/dev/null || echo "/$PREPARED/" >> .git/info/exclude
    "$PYTHON" - <<'EOF'
from transformers import AutoConfig, AutoTokenizer
from unlearn_peft.embedded import smollm2_checkpoint
path = smollm2_checkpoint()
AutoTokenizer.from_pretrained(path).save_pretrained(".gpu_check/smollm2")
AutoConfig.from_pretrained(path).save_pretrained(".gpu_check/smollm2")
EOF
    for name in "${WHEELS[@]}"; do
        requirement="$(pin "$name")"
        "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform any -d "$PREPARED/wheels" "${requirement:-$name}" \
        || "$PYTHON" -m pip wheel -q --no-deps -w "$PREPARED/wheels" "${requirement:-$name}"  # sdist only
    done
    # bitsandbytes ships one 21-26 MB library per CUDA release; keep CUDA 13's (what a current image runs) so that
    # .gpu_check stays inside a device call's 64 MiB.
    "$PYTHON" - <<'EOF'
import glob, re, zipfile
wheel = glob.glob(".gpu_check/wheels/bitsandbytes-*.whl")[0]
drop = re.compile(r"bitsandbytes/libbitsandbytes_cuda1[12]\d\.so")
with zipfile.ZipFile(wheel) as source:
    entries = [(info, source.read(info)) for info in source.infolist() if not drop.fullmatch(info.filename)]
with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as target:
    for info, data in entries:
        if info.filename.endswith(".dist-info/RECORD"):
            data = b"".join(line for line in data.splitlines(keepends=True) if not drop.match(line.decode()))
        target.writestr(info, data)
EOF
    du -sh "$PREPARED"
    exit 0
fi

if [[ -d "$PREPARED/wheels" ]]; then
    # The project itself too (not only PYTHONPATH=.): hub_cards/ installs as unlearn_peft.hub_cards.
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --no-build-isolation --upgrade \
        --target /tmp/site "$PREPARED"/wheels/*.whl .
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 timeout 480 "$PYTHON" benchmarks/gpu_check.py "$@"
