#!/usr/bin/env bash
# tests/deploy/check_rootfs.sh -- the container's runtime layout, exercised without a container
# engine.
#
#   tests/deploy/check_rootfs.sh [--binary PATH]     (default: build/assistant-worker, Release)
#
# deploy/container/rootfs.sh assembles what the Dockerfile's runtime stage holds (the Debian
# packages of deploy/container/runtime-packages.txt and their dependencies, the binary, the
# HEALTHCHECK script) into a directory.  This test then:
#   0. the Dockerfile's build stage: its COPY lines bring every source the build needs;
#   1. the layout is complete: every library of the binary resolves inside it (rootfs.sh);
#   2. that check is not vacuous: with one library taken out of the layout it fails, naming it;
#   3. starts the local stack (deploy/local/lib.sh: Kafka, Redis, the API simulator) and the
#      worker from the layout (its own loader and libraries: usr/local/bin/aw-run), and checks
#      that the running process mapped no shared object from outside the layout;
#   4. the image's HEALTHCHECK (aw-healthcheck) passes against it, and fails on a closed port;
#   5. one request sent with the layout's binary (`send`) is answered `completed`.
# One "ok:"/"FAILED:" line per check, then "N passed, N failed".  Logs: the run dir it prints.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN="$ROOT/build/assistant-worker"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BIN=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "check_rootfs.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
BIN=$(readlink -f "$BIN")
# shellcheck source=../../deploy/local/lib.sh
. "$ROOT/deploy/local/lib.sh"
SIM="$(dirname "$BIN")/aw-simulator"
PASSED=0
FAILED=0
RUN=
ok() { printf 'ok: %s\n' "$*"; PASSED=$((PASSED + 1)); }
fail() { printf 'FAILED: %s\n' "$*"; FAILED=$((FAILED + 1)); }
finish() {
  trap - EXIT
  [ -n "$RUN" ] && { aw_stop_all "$RUN" >/dev/null 2>&1; rm -rf "$RUN/kafka/data" "$RUN/redis/data"; }
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" = 0 ]
  exit $?
}
trap finish EXIT
trap 'exit 130' INT TERM

[ -x "$BIN" ] && [ -x "$SIM" ] || { fail "no worker or simulator binary at $BIN, $SIM"; finish; }
RUN=$(aw_run_dir_new) || { fail "no run dir"; RUN=; finish; }
echo "run dir: $RUN"
LAYOUT="$RUN/rootfs"

# ---- 0: the Dockerfile's build stage has every source it needs ----------------------------------
# Its COPY lines, replayed into an empty directory; then cmake configures there and ninja's dry
# run (-n) needs every input of the assistant-worker target to exist, without compiling.
ctx="$RUN/build-context"
mkdir -p "$ctx"
copied=$(awk '/^FROM .* AS build/ {b = 1; next} /^FROM / {b = 0}
              b && /^COPY / && !/--from/ {print $2, $3}' "$ROOT/deploy/container/Dockerfile" |
  while read -r src dst; do
    # Docker's COPY: a directory's contents into DST, a file into DST/.
    if [ -d "$ROOT/$src" ]; then from="$ROOT/$src/."; else from="$ROOT/$src"; fi
    mkdir -p "$ctx/$dst" && cp -r "$from" "$ctx/$dst/" && printf '%s ' "$src"
  done)
# The build stage installs no cmocka, so CMake there defines no unit tests (whose sources it does
# not COPY): hide cmocka from pkg-config here the same way.
pcdir="$RUN/pkgconfig-without-cmocka"
mkdir -p "$pcdir"
for d in $(pkg-config --variable pc_path pkg-config | tr ':' ' '); do
  for f in "$d"/*.pc; do [ -e "$f" ] && [ "$(basename "$f")" != cmocka.pc ] && ln -sf "$f" "$pcdir/"; done
done
if [ -n "$copied" ] && PKG_CONFIG_LIBDIR="$pcdir" cmake -S "$ctx" -B "$ctx/.build" -G Ninja -DCMAKE_BUILD_TYPE=Release >"$RUN/docker-build.log" 2>&1 &&
   ninja -C "$ctx/.build" -n assistant-worker >>"$RUN/docker-build.log" 2>&1; then
  ok "the Dockerfile's build stage configures and has every source of assistant-worker (COPY ${copied% })"
else
  tail -n 10 "$RUN/docker-build.log"
  fail "the Dockerfile's build stage lacks what the build needs (COPY ${copied:-nothing}; log: $RUN/docker-build.log)"
fi

# ---- 1, 2: the layout ------------------------------------------------------------------------
if "$ROOT/deploy/container/rootfs.sh" --binary "$BIN" "$LAYOUT" >"$RUN/rootfs.log" 2>&1; then
  ok "runtime layout complete: $(tail -n 1 "$RUN/rootfs.log" | sed 's/^rootfs.sh: //') ($(du -sh "$LAYOUT" | cut -f1))"
else
  cat "$RUN/rootfs.log"
  fail "runtime layout (deploy/container/rootfs.sh)"
  finish
fi
lib=$(find "$LAYOUT/usr/lib" -name 'libcjson.so.1*' -type f | head -n 1)
mv "$lib" "$RUN/held-out.so"
if "$ROOT/deploy/container/rootfs.sh" --check-only "$LAYOUT" >"$RUN/rootfs-missing.log" 2>&1; then
  fail "the layout check passed with $(basename "$lib") taken out"
elif grep -q 'missing: libcjson.so.1' "$RUN/rootfs-missing.log"; then
  ok "the layout check fails when a library is missing (libcjson.so.1 taken out)"
else
  fail "the layout check failed without naming the library: $(tail -n 2 "$RUN/rootfs-missing.log")"
fi
mv "$RUN/held-out.so" "$lib"

# ---- 3: the worker from the layout against the local stack -------------------------------------
aw_kafka_start "$RUN" >"$RUN/stack.log" 2>&1 &&
  aw_topics_create "$RUN" 3 assistant.requests assistant.responses assistant.deltas assistant.dlq assistant.usage \
    assistant.tool-requests assistant.tool-replies >>"$RUN/stack.log" 2>&1 &&
  aw_redis_start "$RUN" >>"$RUN/stack.log" 2>&1 &&
  aw_simulator_start "$RUN" "$SIM" >>"$RUN/stack.log" 2>&1 ||
  { tail -n 20 "$RUN/stack.log"; fail "the local stack did not start (log: $RUN/stack.log)"; finish; }
HEALTH_PORT=$(aw_free_ports 1)
CONFIG="$RUN/config.json"
cat >"$CONFIG" <<EOF
{
  "kafka": {"brokers": "$AW_KAFKA_BOOTSTRAP", "group_id": "rootfs-check"},
  "redis": {"host": "127.0.0.1", "port": $AW_REDIS_PORT},
  "api": {"backend": "responses", "base_url": "$AW_API_BASE_URL"},
  "assistants": [{"name": "Customer Support Bot", "model": "gpt-4o", "instructions": "Be brief."}]
}
EOF
unset AW_KAFKA_BROKERS AW_REDIS_PORT AW_API_BASE_URL AW_CONFIG
export AW_API_KEY=sk-local-simulator AW_HEALTH_PORT=$HEALTH_PORT AW_LOG_LEVEL=info
if aw_worker_start "$RUN" "$LAYOUT/usr/local/bin/aw-run" "$CONFIG" >>"$RUN/stack.log" 2>&1; then
  pid=$(cat "$RUN/worker/pid")
  outside=$(awk -v dir="$LAYOUT/" '$6 ~ /\.so/ && index($6, dir) != 1 { print $6 }' "/proc/$pid/maps" | sort -u)
  inside=$(awk -v dir="$LAYOUT/" '$6 ~ /\.so/ && index($6, dir) == 1 { print $6 }' "/proc/$pid/maps" | sort -u | wc -l)
  if [ -z "$outside" ] && [ "$inside" -gt 0 ]; then
    ok "the worker runs from the layout: $inside shared objects mapped, all inside it"
  else
    fail "the worker mapped shared objects from outside the layout: $outside"
  fi
else
  tail -n 20 "$RUN/worker/worker.log"
  fail "the worker did not start from the layout (log: $RUN/worker/worker.log)"
  finish
fi

# ---- 4: the HEALTHCHECK --------------------------------------------------------------------------
if AW_HEALTH_PORT=$HEALTH_PORT timeout 10 "$LAYOUT/usr/local/bin/aw-healthcheck"; then
  ok "the image's HEALTHCHECK (aw-healthcheck) passes against the worker"
else
  fail "aw-healthcheck failed against a running worker on port $HEALTH_PORT"
fi
closed=$(aw_free_ports 1)
if AW_HEALTH_PORT=$closed timeout 10 "$LAYOUT/usr/local/bin/aw-healthcheck" 2>/dev/null; then
  fail "aw-healthcheck passed on a closed port"
else
  ok "aw-healthcheck fails where nothing answers"
fi

# ---- 5: one answer -------------------------------------------------------------------------------
if "$LAYOUT/usr/local/bin/aw-run" send --config "$CONFIG" --conversation rootfs-1 --timeout-ms 60000 \
     "How do I reset my password?" >"$RUN/send.out" 2>"$RUN/send.err" &&
   "$AW_VENV/bin/python" - "$RUN/send.out" <<'EOF'
import json, sys
resp = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
resp = [r for r in resp if "status" in r]
text = "".join(p["text"]["value"] for r in resp for m in r.get("messages") or []
               for p in m.get("content") or [] if p.get("type") == "text")
sys.exit(0 if resp and resp[-1]["status"] == "completed" and text else 1)
EOF
then
  ok "one request answered completed by the worker of the layout"
else
  tail -n 5 "$RUN/send.out" "$RUN/send.err"
  fail "no completed answer (send: $RUN/send.out, worker: $RUN/worker/worker.log)"
fi
finish
