#!/usr/bin/env bash
# Benchmark of the worker; prints a table of figures.  Not a pass/fail test.
#   tests/bench/bench_worker.sh [--events N] [--conversations N] [--inflight N] [--token-delay-ms N]
# Phases: throughput (instant simulator), RSS with N runs in flight (slow runs), and the
# realistic profile (200-token answers paced 20 ms apart): CPU per event and per token, and
# end-to-end latency by stage (pickup, setup, stream, publish).
# Runs on the local stack (real Kafka broker, redis-server, the simulator), with a release
# build.  Machines here are noisy: compare figures taken in one run, not across runs.
set -euo pipefail
AW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$AW_ROOT/deploy/local/lib.sh"

events=20000 conversations=2000 inflight=1000 delay=500
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events=$2; shift ;;
    --conversations) conversations=$2; shift ;;
    --inflight) inflight=$2; shift ;;
    --token-delay-ms) delay=$2; shift ;;
    -h|--help) sed -n 2,5p "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

aw_install_deps
aw_build "$AW_ROOT/build" -DCMAKE_BUILD_TYPE=Release
run=$(aw_run_dir_new)
trap 'aw_stop_all "$run" >/dev/null 2>&1' EXIT
aw_kafka_start "$run"
aw_redis_start "$run"

drive() {
  "$AW_VENV/bin/python" "$AW_ROOT/tests/bench/load.py" --bootstrap "$(cat "$run/kafka/bootstrap")" \
    --redis-port "$(cat "$run/redis/port")" --worker "$AW_ROOT/build/assistant-worker" \
    --simulator "$AW_ROOT/build/aw-simulator" --run "$run" "$@"
}

echo "throughput: $events events over $conversations conversations, instant simulator..." >&2
tp=$(drive throughput --events "$events" --conversations "$conversations")
echo "in flight: $inflight conversations, simulator pacing tokens ${delay} ms apart..." >&2
inf=$(drive inflight --conversations "$inflight" --token-delay-ms "$delay")
echo "realistic: $inflight conversations, 200-token answers paced 20 ms apart..." >&2
real=$(drive realistic --conversations "$inflight" --answer-tokens 200 --token-delay-ms 20)

python3 - "$tp" "$inf" "$real" <<'PY'
import json, sys
tp, inf, real = (json.loads(a) for a in sys.argv[1:4])
rows = [
  ("happy path, instant simulator", ""),
  ("  events answered", f"{tp['events']} {tp['statuses']}"),
  ("  throughput (events/s)", f"{tp['events_per_s']:.0f}"),
  ("  worker CPU per event (us)", f"{tp['cpu_us_per_event']:.0f}"),
  ("  worker RSS at the end (KiB)", f"{tp['rss_kib']}"),
  (f"{inf['conversations']} conversations in flight, slow runs", ""),
  ("  active streams seen at the simulator", f"{inf['active_streams']}"),
  ("  worker RSS idle (KiB)", f"{inf['idle_rss_kib']}"),
  ("  worker RSS, all in flight (KiB)", f"{inf['rss_kib_all_in_flight']}"),
  ("  RSS per in-flight conversation (bytes)", f"{inf['rss_bytes_per_conversation']:.0f}"),
  ("  answered afterwards", f"{inf['answered']}"),
  (f"realistic: {real['conversations']} in flight, {real['tokens_per_answer']} tokens {real['token_delay_ms']} ms apart", ""),
  ("  answered", f"{real['answered']}"),
  ("  worker CPU per event (us)", f"{real['cpu_us_per_event']:.0f}"),
  ("  worker CPU per token (us)", f"{real['cpu_us_per_token']:.2f}"),
] + [(f"  latency {k} p50/p99/p99.9 (ms)", "/".join(f"{v[p]:.0f}" for p in ("p50", "p99", "p99.9")))
     for k, v in real["latency_ms"].items()]
w = max(len(r[0]) for r in rows)
for k, v in rows:
    print(f"{k:<{w}}  {v}")
PY
