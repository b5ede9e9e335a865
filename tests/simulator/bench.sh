#!/bin/sh
# bench.sh -- requests/s of aw-simulator for a simple GET (retrieve assistant).
#
# Starts the simulator on a free loopback port with one MHD thread (pinned to
# one CPU when taskset exists, wrk on another), creates an assistant, and runs
# wrk (one thread, keep-alive, 50 connections) against
# GET /v1/assistants/{id} for DURATION seconds.  Prints the figure as a JSON
# line: {"bench":"simulator_get_assistant","requests_per_s":N,...}.
#
# Usage: tests/simulator/bench.sh [path/to/aw-simulator]
#   env: DURATION (default 5), CONNECTIONS (default 50), THREADS (default 1)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
sim=${1:-${AW_SIMULATOR:-}}
if [ -z "$sim" ]; then
  for c in "$here/../../build/aw-simulator" "$here/../../build-sim/aw-simulator"; do
    [ -x "$c" ] && sim=$c && break
  done
fi
[ -n "$sim" ] && [ -x "$sim" ] || { echo "bench.sh: aw-simulator not found; pass its path" >&2; exit 2; }
command -v wrk >/dev/null || { echo "bench.sh: wrk is missing (apt-get install -y wrk)" >&2; exit 2; }
command -v curl >/dev/null || { echo "bench.sh: curl is missing" >&2; exit 2; }

duration=${DURATION:-5}
conns=${CONNECTIONS:-50}
threads=${THREADS:-1}
tmp=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

pin_sim= pin_wrk=
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin_sim="taskset -c 0" pin_wrk="taskset -c 1"
fi
$pin_sim "$sim" --port 0 --port-file "$tmp/port" --threads "$threads" --log-level warn 2>"$tmp/log" &
pid=$!
i=0
while [ ! -s "$tmp/port" ]; do
  i=$((i + 1))
  [ $i -gt 100 ] && { echo "bench.sh: simulator did not start" >&2; cat "$tmp/log" >&2; exit 1; }
  sleep 0.05
done
port=$(cat "$tmp/port")
base="http://127.0.0.1:$port"
hdr_auth="Authorization: Bearer bench"
hdr_beta="OpenAI-Beta: assistants=v2"
asst=$(curl -sf -H "$hdr_auth" -H "$hdr_beta" -H "Content-Type: application/json" \
  -d '{"model":"gpt-4o","name":"bench","instructions":"Answer briefly."}' "$base/v1/assistants" |
  sed 's/.*"id":"\([^"]*\)".*/\1/')
curl -sf -H "$hdr_auth" -H "$hdr_beta" "$base/v1/assistants/$asst" >/dev/null

$pin_wrk wrk -t1 -c"$conns" -d"${duration}s" -H "$hdr_auth" -H "$hdr_beta" "$base/v1/assistants/$asst" >"$tmp/wrk"
cat "$tmp/wrk" >&2
rps=$(awk '/^Requests\/sec:/ {printf "%d", $2}' "$tmp/wrk")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$tmp/wrk")
echo "{\"bench\":\"simulator_get_assistant\",\"requests_per_s\":${rps:-0},\"connections\":$conns,\"sim_threads\":$threads,\"duration_s\":$duration,\"non_2xx\":${non2xx:-0}}"
