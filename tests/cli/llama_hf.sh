#!/usr/bin/env bash
# Llama against Hugging Face transformers (LlamaForCausalLM, from PyPI in the virtual
# environment scripts/setup.sh makes, $LOOM_HF_VENV, over Debian's torch):
#  - a random LlamaForCausalLM (grouped-query attention; tied, and untied with llama3
#    rope scaling) saved by save_pretrained and loaded by loom: logits, loss, every
#    gradient, 10 AdamW steps with warmup, cosine and clipping (test_gpt_parity);
#  - loom's exports load in transformers (LlamaForCausalLM and GPT2LMHeadModel
#    .from_pretrained) and give loom's loss on the same windows;
#  - bad Hugging Face configs and files: one clear line each.
# Skipped (77), saying why, when the environment could not be made (no PyPI).
source "$(dirname "$0")/lib.sh"
PY=${LOOM_HF_VENV:-/opt/loom-test/venv}/bin/python
PARITY=${PARITY:-$(dirname "$LOOM")/tests/test_gpt_parity}
"$PY" -c "import transformers" 2>/dev/null ||
  { echo "no transformers in ${LOOM_HF_VENV:-/opt/loom-test/venv} (scripts/setup.sh could not reach PyPI?): skipped"; exit 77; }
export TRANSFORMERS_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error

for kind in tied untied; do
  extra=""
  [ $kind = untied ] && extra="--untied --rope-scaling"
  "$PY" tests/pytorch/llama_ref.py "$TMP/$kind" $extra >/dev/null 2>"$TMP/$kind.err"
  check "llama_ref.py $kind ($(tail -c 300 "$TMP/$kind.err"))" test -s "$TMP/$kind/ref.safetensors"
  "$PARITY" "$TMP/$kind/ref.safetensors" "$TMP/$kind/model/model.safetensors" >"$TMP/$kind.out" 2>&1
  check "Llama $kind vs transformers: logits, loss, gradients, 10 AdamW steps ($(grep -m3 FAIL "$TMP/$kind.out"))" \
    grep -q "test_gpt_parity: [0-9]* passed, 0 failed" "$TMP/$kind.out"
done

# loom's exports in transformers: the same mean loss over the same windows
od -An -v -tu1 -w1 data/tinyshakespeare.txt | head -n 30000 | tr -d ' ' |
  /usr/bin/python3 -c "import sys, array; array.array('H', map(int, sys.stdin)).tofile(open(sys.argv[1], 'wb'))" "$TMP/bytes.u16"
for arch in llama gpt2; do
  if [ $arch = llama ]; then shape="--model llama-tiny --n-layer 2 --n-embd 64 --n-head 4 --n-kv-head 2 --ffn-dim 96 --tie off"
  else shape="--model tiny --n-layer 2 --n-embd 64 --n-head 4"; fi
  "$LOOM" train $shape --vocab-size 256 --block-size 64 --data "$TMP/bytes.u16" --batch 4 --seq-len 32 --steps 8 \
    --lr 3e-3 --threads 2 --peak-gflops 400 --quiet --out "$TMP/$arch" 2>"$TMP/$arch.train.err"
  "$LOOM" export --init-from "$TMP/$arch/model.safetensors" --out "$TMP/$arch.hf" >/dev/null 2>>"$TMP/$arch.train.err"
  want=$("$LOOM" eval --init-from "$TMP/$arch.hf/model.safetensors" --data "$TMP/bytes.u16" --batch 4 --seq-len 32 \
    --max-batches 3 --json 2>>"$TMP/$arch.train.err" | sed -E 's/.*"loss": ([^,]*),.*/\1/')
  got=$("$PY" - "$TMP/$arch.hf" "$TMP/bytes.u16" <<'EOF' 2>>"$TMP/$arch.train.err"
import sys, numpy as np, torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
tok = np.fromfile(sys.argv[2], dtype="<u2").astype(np.int64)
B, T, losses = 4, 32, []
with torch.no_grad():
    for k in range(3):  # loom eval's windows: i covers tokens [i*T, i*T + T + 1)
        w = torch.tensor(np.stack([tok[(k * B + b) * T:(k * B + b) * T + T + 1] for b in range(B)]))
        lg = m(w[:, :-1]).logits
        losses.append(torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), w[:, 1:].reshape(-1)).item())
print(type(m).__name__, sum(losses) / len(losses))
EOF
)
  check "$arch export loads in transformers ($got; $(tail -c 200 "$TMP/$arch.train.err"))" \
    /usr/bin/python3 -c "import sys; n, g = sys.argv[1].split(); w = float(sys.argv[2]);
sys.exit(0 if n == sys.argv[3] and abs(float(g) - w) <= 1e-5 * abs(w) else 1)" "$got" "$want" \
    "$([ $arch = llama ] && echo LlamaForCausalLM || echo GPT2LMHeadModel)"
done

# a sharded Hugging Face model (model.safetensors.index.json and its shards, as
# save_pretrained writes a large one): the same loss as the single file, by the index or
# by the directory
"$PY" -c "
import sys
from transformers import LlamaForCausalLM
LlamaForCausalLM.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2], max_shard_size='40KB', safe_serialization=True)
" "$TMP/untied/model" "$TMP/sharded" 2>"$TMP/shard.err"
shards=$(ls "$TMP/sharded" | grep -c '^model-.*\.safetensors$')
check "save_pretrained wrote a sharded model ($shards shards; $(tail -c 200 "$TMP/shard.err"))" test "$shards" -ge 2
head -c 4000 data/tinyshakespeare.txt | od -An -v -tu1 -w1 | tr -d ' ' | awk '{print $1 % 97}' |
  /usr/bin/python3 -c "import sys, array; array.array('H', map(int, sys.stdin)).tofile(open(sys.argv[1], 'wb'))" "$TMP/v97.u16"
E97="--data $TMP/v97.u16 --batch 2 --seq-len 16 --max-batches 3 --json"
one=$("$LOOM" eval --init-from "$TMP/untied/model/model.safetensors" $E97 2>&1)
idx=$("$LOOM" eval --init-from "$TMP/sharded/model.safetensors.index.json" $E97 2>&1)
dir=$("$LOOM" eval --init-from "$TMP/sharded" $E97 2>&1)
check "the sharded model by its index gives the single file's loss ($idx vs $one)" test "$idx" = "$one"
check "the sharded model by its directory gives the single file's loss ($dir)" test "$dir" = "$one"

# bad Hugging Face input: one line each
M="$TMP/tied/model"
bad() { # bad NAME SED-EXPRESSION: a copy of the tied model whose config.json is edited
  rm -rf "$TMP/bad_$1" && cp -r "$M" "$TMP/bad_$1" && sed -i -E "$2" "$TMP/bad_$1/config.json"
  echo "$TMP/bad_$1/model.safetensors"
}
E="--data $TMP/bytes.u16 --batch 2 --seq-len 16 --max-batches 1"
expect_error "unknown model_type" "model_type 'mamba' is not supported here" \
  "$LOOM" eval --init-from "$(bad type 's/"model_type": "llama"/"model_type": "mamba"/')" $E
expect_error "a missing field" '"num_hidden_layers" is missing' \
  "$LOOM" eval --init-from "$(bad layers '/num_hidden_layers/d')" $E
expect_error "n_kv_head not dividing n_head" "--n-kv-head: 4 key/value heads do not divide --n-head 6" \
  "$LOOM" eval --init-from "$(bad kv 's/"num_key_value_heads": 2/"num_key_value_heads": 4/')" $E
expect_error "a shape that disagrees with the config" "the model needs" \
  "$LOOM" eval --init-from "$(bad ffn 's/"intermediate_size": 80/"intermediate_size": 96/')" $E
expect_error "an unsupported rope scaling" "rope_scaling of type 'yarn' is not supported" \
  "$LOOM" eval --init-from "$(bad rope 's/"rope_scaling": null/"rope_scaling": {"rope_type": "yarn", "factor": 2.0}/')" $E
/usr/bin/python3 - "$M/model.safetensors" "$TMP/missing.safetensors" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
del h['model.layers.1.mlp.down_proj.weight']
hb = json.dumps(h).encode()
hb += b' ' * (-len(hb) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hb)) + hb + b[8 + n:])
EOF
cp "$M/config.json" "$TMP/config.json"
expect_error "a tensor missing from the safetensors" "tensor 'model.layers.1.mlp.down_proj.weight' is missing" \
  "$LOOM" eval --init-from "$TMP/missing.safetensors" $E
finish llama_hf
