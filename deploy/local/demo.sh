#!/usr/bin/env bash
# deploy/local/demo.sh -- the main job end to end on the local stack.
#
#   deploy/local/demo.sh [--backend responses|assistants|chat] [--no-real-model]
#
# Installs what is missing, builds (release, build/), starts a single-node Kafka (KRaft),
# redis-server, the API simulator, one worker configured with the brief's "Customer Support Bot"
# and "Weather Assistant", and the example weather service (deploy/examples), then:
#   1. syncs the support documents of deploy/local/docs/ (a Markdown guide, and account policies
#      made into a PDF) into a vector store attached to the Customer Support Bot (not on the chat
#      backend: no file search there), asks it two questions in conversation demo-1 with
#      `assistant-worker send` (the second one streamed), prints each answer with the document it
#      cites, and shows that both were answered in the same backend conversation (a Responses API
#      conversation by default; an Assistants thread with --backend assistants);
#   2. asks the Weather Assistant about Paris and Tokyo in conversation demo-weather: the model
#      calls get_weather twice in parallel, the worker routes both calls over Kafka to the
#      weather service, and the answer uses both outputs;
#   3. gives the "Data Analyst" (the code_interpreter tool) the monthly sales of
#      deploy/local/data/sales.csv as an inline attachment and asks for a bar chart in
#      conversation demo-data (`send --attach ... --save-files ...`): the chart the code
#      interpreter made comes back in the response (chart.png, inline) and is saved as
#      RUN/output/chart.png (not on the chat backend: no hosted tools there);
#   4. (unless --no-real-model) the Customer Support Bot answers with a real language model:
#      SmolLM2-135M-Instruct served by llama-cpp-python's /v1/chat/completions, through a second
#      worker on the chat backend (the fleet keeps the conversation's history in Redis and sends
#      it with every turn): two turns in conversation demo-real, the second streamed, with the
#      latency of each.  Both install from PyPI (deploy/local/lib_realmodel.sh): the first run
#      compiles llama.cpp (3 min on 2 idle cores, 20+ on busy ones) and caches it; re-runs start
#      the model in seconds.
# Everything is stopped on exit, also on Ctrl-C or an error; logs stay in the run dir it prints.
# Re-running starts from scratch (new run dir, free ports).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/deploy/local/lib.sh"
# shellcheck source=lib_realmodel.sh
. "$ROOT/deploy/local/lib_realmodel.sh"

BUILD=${AW_DEMO_BUILD_DIR:-$ROOT/build}   # release build (no sanitizers)
BACKEND=responses
REAL_MODEL=1
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) BACKEND=${2:-}; shift 2 ;;
    --backend=*) BACKEND=${1#--backend=}; shift ;;
    --no-real-model) REAL_MODEL=0; shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) printf 'demo: unknown argument %s (try --help)\n' "$1" >&2; exit 2 ;;
  esac
done
case "$BACKEND" in responses|assistants|chat) ;; *) printf 'demo: --backend responses, assistants or chat\n' >&2; exit 2 ;; esac
CONV=demo-1
Q1="How do I reset my password?"
Q2="Thanks! And how do I change my email address?"
Q3="What's the weather in Paris and in Tokyo?"
Q4="Make a bar chart of the monthly sales"
SALES="$ROOT/deploy/local/data/sales.csv"
RUN=

say() { printf '%s\n' "$*"; }
die() { printf 'demo failed: %s\n' "$*" >&2; exit 1; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$RUN" ]; then
    if aw_stop_all "$RUN"; then
      [ $rc = 0 ] && say "Stopped worker, simulator, Redis and Kafka cleanly."
    else
      say "Some service needed SIGKILL to stop; see the logs in $RUN"
    fi
    [ $rc = 0 ] || say "Logs: $RUN"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "assistant-worker demo"
aw_install_deps || die "could not install the dependencies"
aw_build "$BUILD" || die "build failed (log: $BUILD/aw-build.log)"
[ -x "$BUILD/aw-simulator" ] || die "$BUILD/aw-simulator was not built"

RUN=$(aw_run_dir_new)
say "Logs and data of this run: $RUN"

t0=$(aw_now_ms)
aw_kafka_start "$RUN" || die "Kafka did not start"
aw_topics_create "$RUN" 12 assistant.requests assistant.responses assistant.deltas \
  assistant.tool-requests assistant.tool-replies assistant.usage >/dev/null || die "cannot create topics"
aw_topics_create "$RUN" 4 assistant.dlq >/dev/null || die "cannot create topics"
aw_redis_start "$RUN" || die "redis-server did not start"
aw_simulator_start "$RUN" "$BUILD/aw-simulator" --token-delay-ms 15 || die "the simulator did not start"

# The addresses lib.sh picked (free ports) go into the worker's config file; the AW_*
# variables are then cleared so that the file is what the worker and `send` read.
KAFKA=$AW_KAFKA_BOOTSTRAP REDIS_PORT=$AW_REDIS_PORT API_URL=$AW_API_BASE_URL
# Redis requires AUTH: the ACL user lib.sh made, its password in a file of the run dir (mode
# 0600), named by the config file -- as a mounted Kubernetes Secret would be.
REDIS_USER=$AW_REDIS_USERNAME REDIS_PASSWORD_FILE=$AW_REDIS_PASSWORD_FILE
CONFIG="$RUN/worker.config.json"
# The bot answers from the support documents of deploy/local/docs/: the guide as Markdown, the
# account policies as a PDF made from their Markdown here (fpdf2, from tests/requirements.txt: no
# binary in the repo). `sync` uploads both to a vector store attached to the bot (README,
# "Knowledge"). Chat Completions servers have no file search: on the chat backend the bot goes
# without it (the worker refuses hosted tools there).
DOCS="$ROOT/deploy/local/docs"
KNOWLEDGE='' SUPPORT_STORES='[]' ANALYST=''
if [ "$BACKEND" != chat ]; then
  mkdir -p "$RUN/docs"
  "$AW_VENV/bin/python" - "$DOCS/account-policies.md" "$RUN/docs/account-policies.pdf" <<'PY' ||
import sys
from fpdf import FPDF
pdf = FPDF()
pdf.add_page()
pdf.set_font("Helvetica", size=12)
text = "\n".join(l for l in open(sys.argv[1], encoding="utf-8").read().splitlines() if not l.startswith("#"))
pdf.multi_cell(0, 8, text)
pdf.output(sys.argv[2])
PY
    die "could not write the PDF of the account policies"
  KNOWLEDGE='"knowledge": {"vector_stores": [{"name": "support-docs", "documents": ["'"$DOCS/support-guide.md"'", "'"$RUN/docs/account-policies.pdf"'"]}]},'
  SUPPORT_STORES='["support-docs"]'
  # The Data Analyst runs Python in the API's code interpreter, a hosted tool: not on chat.
  ANALYST='{"name": "Data Analyst", "model": "gpt-4o",
      "instructions": "You are a data analyst. Use the code interpreter to analyse the files you are given and to draw charts.",
      "tools": [{"type": "code_interpreter"}]},'
fi
cat >"$CONFIG" <<EOF
{
  "kafka": {
    "brokers": "$KAFKA",
    "group_id": "assistant-worker",
    "topics": {"requests": "assistant.requests", "responses": "assistant.responses",
               "deltas": "assistant.deltas", "dlq": "assistant.dlq", "usage": "assistant.usage",
               "tool_requests": "assistant.tool-requests", "tool_replies": "assistant.tool-replies"}
  },
  "redis": {"host": "127.0.0.1", "port": $REDIS_PORT, "prefix": "aw",
            "username": "$REDIS_USER", "password_file": "$REDIS_PASSWORD_FILE"},
  "api": {"backend": "$BACKEND", "base_url": "$API_URL", "timeout_ms": 30000, "max_retries": 5},
  $KNOWLEDGE
  "assistants": [
    {
      "name": "Customer Support Bot",
      "model": "gpt-4o",
      "instructions": "Provide support based on the latest documentation.",
      "vector_stores": $SUPPORT_STORES
    },
    $ANALYST
    {
      "name": "Weather Assistant",
      "model": "gpt-4o",
      "instructions": "You are a weather bot. Use the provided functions to answer questions.",
      "tools": [
        {
          "type": "function",
          "function": {
            "name": "get_weather",
            "description": "Retrieve weather information for a location.",
            "parameters": {
              "type": "object",
              "properties": {
                "location": {"type": "string", "description": "City name"}
              },
              "required": ["location"]
            }
          }
        }
      ]
    }
  ],
  "functions": {
    "get_weather": {"topic": "assistant.tool-requests", "deadline_ms": 15000, "on_deadline": "error_output"}
  }
}
EOF
# The simulator takes any bearer key; never a real one here (and never logged).
export AW_API_KEY=sk-local-simulator
# The HMAC key of tool-call correlation ids: a fresh random one per run (never logged).
AW_TOOL_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export AW_TOOL_SECRET
# The key the worker and the weather service share: it signs tool requests and their replies
# (schemas/README.md, "Signatures"); also fresh per run, never logged.
AW_TOOL_REQUEST_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export AW_TOOL_REQUEST_KEY
unset AW_KAFKA_BROKERS AW_KAFKA_BOOTSTRAP AW_REDIS_HOST AW_REDIS_PORT AW_REDIS_PREFIX AW_API_BASE_URL \
  AW_KAFKA_GROUP_ID AW_TOPIC_REQUESTS AW_TOPIC_RESPONSES AW_TOPIC_DELTAS AW_TOPIC_DLQ AW_CONFIG \
  AW_REDIS_USERNAME AW_REDIS_PASSWORD_FILE AW_KAFKA_SASL_BOOTSTRAP
export AW_LOG_LEVEL=${AW_LOG_LEVEL:-info}

if [ "$BACKEND" != chat ]; then
  # The worker would sync at start-up too (knowledge.sync_on_start); run apart, the sync shows
  # what it uploaded, and the worker's own sync then finds nothing to do.
  "$BUILD/assistant-worker" sync --config "$CONFIG" >"$RUN/sync.json" 2>"$RUN/sync.log" ||
    die "the sync of the support documents failed (log: $RUN/sync.log)"
  # The API's file names, so that a citation by file id (the Assistants API gives no name) can
  # name its document too.
  "$BUILD/assistant-worker" file ls --config "$CONFIG" >"$RUN/files.json" 2>>"$RUN/sync.log" ||
    die "cannot list the uploaded files (log: $RUN/sync.log)"
  say "Synced the support documents: $(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(", ".join("%s %s" % (k, v) for k, v in s.items() if not isinstance(v, (dict, list))))' "$RUN/sync.json")"
fi
aw_worker_start "$RUN" "$BUILD/assistant-worker" "$CONFIG" || die "the worker did not start"
[ -x "$BUILD/weather_service" ] || die "$BUILD/weather_service was not built"
aw_spawn "$RUN" weather-service "$BUILD/weather_service" --brokers "$KAFKA" \
  --requests-topic assistant.tool-requests
weather_ready() {
  aw_alive "$RUN" weather-service || return 2
  grep -q '"msg":"weather service ready"' "$RUN/weather-service/weather-service.log" 2>/dev/null || return 1
}
aw_wait_until 60 "the weather service to be ready" weather_ready ||
  die "the weather service did not start (log: $RUN/weather-service/weather-service.log)"
say "Stack up in $(( ($(aw_now_ms) - t0) / 1000 )) s: Kafka $KAFKA, Redis :$REDIS_PORT, simulator $API_URL, 1 worker ($BACKEND backend), weather service."
say ""

# The renderer of `send`'s output: deltas as they arrive, then the answer and its ids; the
# response's fields go to the file named by argv[1] for the summary.
RENDER="$RUN/render.py"
cat >"$RENDER" <<'PY'
import json, os, sys
out, who, streamed, resp = sys.argv[1], sys.argv[2], False, None
names = {}  # file id -> the API's file name (files.json: `assistant-worker file ls`)
if os.path.exists(os.path.join(os.path.dirname(out), "files.json")):
    with open(os.path.join(os.path.dirname(out), "files.json")) as f:
        names = {o["id"]: o.get("filename") for o in json.load(f).get("data") or []}
for line in sys.stdin:
    try:
        obj = json.loads(line)
    except ValueError:
        continue
    if "seq" in obj and "text" in obj and "status" not in obj:
        if not streamed:
            sys.stdout.write(who + " (streamed): ")
            streamed = True
        sys.stdout.write(obj["text"])
        sys.stdout.flush()
    elif "status" in obj:
        resp = obj
if resp is None:
    sys.exit(3)
text = "".join(p["text"]["value"] for m in resp.get("messages") or []
               for p in m.get("content") or [] if p.get("type") == "text")
print() if streamed else print(who + ": " + text)
def doc(name):  # the synced file "aw-kb.<store>.<vector store id>.<hash>.<document>": its document
    parts = (name or "").split(".", 4)
    return parts[4] if len(parts) == 5 and parts[0] == "aw-kb" else name
cites = [doc(a.get("filename") or names.get(a.get("file_id"))) or a.get("file_id") for m in resp.get("messages") or []
         for p in m.get("content") or [] if p.get("type") == "text"
         for a in (p.get("text") or {}).get("annotations") or [] if a.get("type") == "file_citation"]
for c in dict.fromkeys(cites):
    print("  [cites %s]" % c)
for c in resp.get("tool_calls") or []:
    print("  [tool call %s: %s -> %s]" % (c["id"], c["name"], c["outcome"]))
# The files the turn generated (code interpreter): inline (their bytes in the response) or by
# reference (`assistant-worker file get`), and the image parts showing them.
files = resp.get("files") or []
for f in files:
    print("  [file %s: %s, %s bytes, %s]" % (f.get("filename") or f.get("file_id"), f.get("media_type"),
          "?" if f.get("bytes") is None else f["bytes"], "inline" if "data" in f else "by reference"))
for m in resp.get("messages") or []:
    for p in m.get("content") or []:
        if p.get("type") == "image_file":
            fid = (p.get("image_file") or {}).get("file_id") or p.get("file_id")
            print("  [image %s]" % next((f.get("filename") for f in files if f.get("file_id") == fid), fid))
# `send --save-files` says on stderr (send-N.log, complete once send has exited) where it saved each.
log = out.replace("answer-", "send-")[:-len(".json")] + ".log"
if files and os.path.exists(log):
    for line in open(log, encoding="utf-8", errors="replace"):
        if line.startswith("assistant-worker send: saved "):
            print("  [saved " + line[len("assistant-worker send: saved "):].rstrip() + "]")
usage = resp.get("usage") or {}
be = resp.get("backend") or {}
print("  [status %s, %s backend: conversation %s, turn %s, %s tokens]" % (
    resp["status"], be.get("kind"), be.get("conversation"), be.get("turn"), usage.get("total_tokens", "?")))
with open(out, "w") as f:
    json.dump({"status": resp["status"], "conversation": be.get("conversation"), "text": text, "cites": cites,
               "usage": usage, "message_id": ((resp.get("messages") or [{}])[0]).get("id"),
               "files": [{k: v for k, v in x.items() if k != "data"} for x in files]}, f)
# A capped answer (incomplete) of the real model is still its answer.
sys.exit(0 if resp["status"] in ("completed", "incomplete") else 4)
PY

# ask N TEXT [SEND_ARGS...]: send one message of conversation $CONV to assistant $WHO and tell
# the story.
WHO="Customer Support Bot"
ask() {
  local n=$1 text=$2; shift 2
  say "User ($CONV): $text"
  set +e
  "$BUILD/assistant-worker" send --config "${ASK_CONFIG:-$CONFIG}" --conversation "$CONV" --assistant "$WHO" \
      --timeout-ms "${ASK_TIMEOUT_MS:-60000}" "$@" "$text" \
      2>"$RUN/send-$n.log" | tee "$RUN/send-$n.jsonl" | python3 -u "$RENDER" "$RUN/answer-$n.json" "$WHO"
  local st=("${PIPESTATUS[@]}")
  set -e
  # The renderer judges (send exits non-zero for anything but completed; a real model's answer
  # capped by max_output_tokens is "incomplete" and still its answer).
  if [ "${st[2]}" != 0 ]; then
    tail -n 5 "$RUN/send-$n.log" >&2
    die "no completed answer to message $n (send exit ${st[0]}; see $RUN/send-$n.log and $RUN/worker/worker.log)"
  fi
  say ""
}

ask 1 "$Q1"
ask 2 "$Q2" --stream
CONV=demo-weather WHO="Weather Assistant" ask 3 "$Q3"
# The Data Analyst: the CSV goes inline in the request (the worker uploads it once and hands
# the code interpreter its file id); the chart comes back inline and `send` saves it.
OUT="$RUN/output"
if [ "$BACKEND" = chat ]; then
  say "demo-data: skipped on the chat backend: a Chat Completions server has no hosted tools (no code_interpreter to draw the chart)"
  say ""
else
  say "(attached: $SALES, $(( $(wc -l <"$SALES") - 1 )) months, for code_interpreter)"
  CONV=demo-data WHO="Data Analyst" ask data "$Q4" --attach "$SALES:code_interpreter" --save-files "$OUT"
fi

field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
T1=$(field "$RUN/answer-1.json" conversation)
T2=$(field "$RUN/answer-2.json" conversation)
say "Summary"
say "  conversation:  $CONV (2 messages, both answered: completed; $BACKEND backend)"
if [ "$BACKEND" = chat ]; then
  say "  history:       kept by the fleet in Redis (aw:{c:$CONV}:hist), sent with each turn"
elif [ "$T1" = "$T2" ]; then
  say "  backend conv:  $T1 (the same for both messages: the follow-up continued it)"
else
  die "the follow-up used backend conversation $T2, not $T1"
fi
if [ "$BACKEND" != chat ]; then
  C1=$(python3 -c 'import json,sys; print(", ".join(json.load(open(sys.argv[1]))["cites"]))' "$RUN/answer-1.json")
  C2=$(python3 -c 'import json,sys; print(", ".join(json.load(open(sys.argv[1]))["cites"]))' "$RUN/answer-2.json")
  [ -n "$C1" ] || die "the first answer cites no support document"
  say "  documents:     both answers quote the support documents and cite them ($C1; $C2)"
fi
A3=$(field "$RUN/answer-3.json" text)
case "$A3" in
  *Paris*Tokyo*) say "  demo-weather:  answered with both get_weather outputs (2 parallel calls routed over Kafka)" ;;
  *) die "the weather answer does not use both outputs: $A3" ;;
esac
if [ "$BACKEND" != chat ]; then
  CHART="$OUT/chart.png"
  [ -s "$CHART" ] || die "the Data Analyst's chart was not saved (see $RUN/send-data.log)"
  # A PNG starts with its 8-byte signature; the response's `files` said how many bytes it has.
  [ "$(head -c 8 "$CHART" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || die "$CHART is not a PNG"
  say "  demo-data:     the code interpreter's bar chart of $SALES: $CHART ($(wc -c <"$CHART") bytes, PNG)"
fi
say "  logs:          $RUN (worker/worker.log, kafka/logs/server.log, redis/, simulator/)"

# ---- 4. the Customer Support Bot on a real model -------------------------------------------
[ "$REAL_MODEL" = 1 ] || exit 0
say ""
say "A real model: SmolLM2-135M-Instruct (PyPI $AW_SMOLLM2_PKG) served by llama-cpp-python $AW_LLAMA_CPP_VERSION"
t_model=$(aw_now_ms)
# Plain chatml: the bot calls no functions, and the function-calling template HTML-escapes text.
AW_REALMODEL_ARGS="--chat_format chatml ${AW_REALMODEL_ARGS:-}" aw_realmodel_start "$RUN" || die "the model server did not start (log: $RUN/realmodel/realmodel.log)"
say "Model server up in $(( ($(aw_now_ms) - t_model) / 1000 )) s at $AW_REALMODEL_URL (Chat Completions)"
# A second worker, on the chat backend, with its own topics and group: the first one keeps
# answering on the simulator.
aw_topics_create "$RUN" 4 assistant-real.requests assistant-real.responses assistant-real.deltas \
  assistant-real.dlq assistant-real.usage >/dev/null || die "cannot create topics"
REAL_CONFIG="$RUN/worker-real.config.json"
cat >"$REAL_CONFIG" <<EOF
{
  "kafka": {
    "brokers": "$KAFKA",
    "group_id": "assistant-worker-real",
    "topics": {"requests": "assistant-real.requests", "responses": "assistant-real.responses",
               "deltas": "assistant-real.deltas", "dlq": "assistant-real.dlq", "usage": "assistant-real.usage",
               "tool_requests": "assistant.tool-requests", "tool_replies": "assistant.tool-replies"}
  },
  "redis": {"host": "127.0.0.1", "port": $REDIS_PORT, "prefix": "aw",
            "username": "$REDIS_USER", "password_file": "$REDIS_PASSWORD_FILE"},
  "api": {"backend": "chat", "base_url": "$AW_REALMODEL_URL", "timeout_ms": 120000,
          "stream_idle_timeout_ms": 120000, "max_retries": 2},
  "assistants": [
    {
      "name": "Customer Support Bot",
      "model": "smollm2",
      "instructions": "You are the customer support bot of an online shop. Answer in one or two short sentences.",
      "max_output_tokens": 128,
      "history": {"max_messages": 20, "max_tokens": 2000}
    }
  ]
}
EOF
aw_worker_start "$RUN" "$BUILD/assistant-worker" "$REAL_CONFIG" worker-real ||
  die "the chat worker did not start (log: $RUN/worker-real/worker-real.log)"
CONV=demo-real
R1="Hello! How do I reset my password?"
R2="Thanks. Can I change my email address too?"
t=$(aw_now_ms); ASK_CONFIG=$REAL_CONFIG ASK_TIMEOUT_MS=180000 ask 4 "$R1"; L4=$(( $(aw_now_ms) - t ))
t=$(aw_now_ms); ASK_CONFIG=$REAL_CONFIG ASK_TIMEOUT_MS=180000 ask 5 "$R2" --stream; L5=$(( $(aw_now_ms) - t ))
MID=$(field "$RUN/answer-4.json" message_id)
# What the chat worker sent with each turn (its "context:" log line, one per turn).
CTX=$(grep -o '"msg":"context: [^"]*"' "$RUN/worker-real/worker-real.log" | sed 's/"msg":"context: //; s/"$//')
CTX1=$(sed -n 1p <<<"$CTX") CTX2=$(sed -n 2p <<<"$CTX")
say "Real model"
say "  answered by:   model smollm2 (SmolLM2-135M-Instruct Q4_1) on llama-cpp-python, chat backend ($MID)"
say "  latency:       $L4 ms and $L5 ms from send to response (the second one streamed; capped at 128 tokens)"
say "  sent:          turn 1: $CTX1; turn 2: $CTX2 (the fleet's history, kept in Redis)"
case "$CTX2" in 1\ of\ 1\ *) ;; *) die "the second turn did not carry the first one: $CTX2" ;; esac
