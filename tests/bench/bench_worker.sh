#!/usr/bin/env bash
# Benchmark of the worker; prints a table of figures.  Not a pass/fail test.
#   tests/bench/bench_worker.sh [--backend responses|assistants|chat|both|all|LIST] [--phases LIST]
#       [--events N] [--conversations N] [--inflight N]
#       [--history-conversations N] [--history-turns N] [--history-max-messages N]
#       [--token-delay-ms N] [--tool-conversations N] [--tool-rate N] [--tool-workers LIST]
#       [--weather-x KEY=VALUE]... [--short-seconds N] [--short-rate N] [--json FILE]
# --backend: the worker's api.backend (README "Configuration"): responses (Responses +
#   Conversations API), assistants (Assistants API v2), or both (the default: each phase
#   runs on responses, then on assistants, before the next phase; the table has one column
#   per backend; twice the time of one backend: all phases at the default sizes took
#   about 10 minutes on 2 busy cores).  A comma-separated list runs those in that order:
#   on a busy machine the backend that went first had several times the paced latency
#   (pickup, publish) in some runs, whichever it was, so compare latencies over both
#   orders (CPU and memory figures did not depend on the order).  The short phase paces
#   each backend at half of its own maximum; --short-rate N compares them at one load.
#   chat: Chat Completions, the history kept by the fleet in Redis (README "The chat
#   backend"); all = responses,assistants,chat.  On chat the table adds: the worker's CPU per
#   event as a ratio to the responses backend's (when both ran in this invocation; the target
#   is within 1.5x, printed, not asserted), and from the worker's /metrics (an ops port per
#   worker) Redis bytes per stored turn (aw_history_bytes_committed_total / commits) and
#   history round trips per event ((loads + pending saves + commits + duplicate commits) /
#   events answered), loads and commits per event.
# Phases (--phases, comma-separated; default all: throughput,inflight,realistic,tools,short,
#   history):
#   throughput  instant simulator, backlog of --events over --conversations: events/s, CPU/event
#   inflight    --inflight slow runs (tokens --token-delay-ms apart) at once: RSS per conversation
#   realistic   --inflight runs, 200-token answers paced 20 ms apart: CPU per event and per
#               token, end-to-end latency by stage (pickup, setup, stream, publish)
#   tools       function calling over Kafka (the Weather Assistant and the example weather
#               service, instant): --tool-conversations plain events, as many tool events (one
#               city each), then both shuffled together, Poisson arrivals at --tool-rate/s, with
#               1 and 2 workers (--tool-workers): the tool round trip (p50/p99, by stage), what
#               it adds end to end, its CPU; --weather-x passes a librdkafka property to the
#               weather service (e.g. linger.ms=0; its default is librdkafka's 5 ms)
#   short       issue 4's short profile (20-token answers, instant simulator): maximum
#               throughput and CPU/event, then --short-seconds at half that rate (or
#               --short-rate): latency p50/p99/p99.9 end to end and in the worker, and the
#               worker's added latency over the simulator's (measured directly: the
#               backend's own HTTP sequence for a turn, sent by load.py to the simulator;
#               on chat the worker's own last request bodies, replayed)
#   history     chat backend only (skipped on the others): --history-conversations (50) x
#               --history-turns (8) turns, turn by turn, the assistant's history budget
#               {"max_messages": --history-max-messages (6)}: the most messages sent in one
#               request (GET /admin/chat/requests) against the budget, and the history figures
# Runs on the local stack (real Kafka broker, redis-server, the simulator), with a release
# build.  Machines here are noisy: compare figures taken in one run, not across runs.
# The per-phase JSON (every figure, more than the table shows) goes to --json FILE if given:
# {"<backend>": {"throughput": ..., "inflight": ..., "realistic": ..., "tools": ..., "short": ...,
#   "history": ...}}
# (null for a phase not run).
set -euo pipefail
AW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$AW_ROOT/deploy/local/lib.sh"

events=20000 conversations=2000 inflight=1000 delay=500
phases=throughput,inflight,realistic,tools,short,history
history_conversations=50 history_turns=8 history_max_messages=6
tool_conversations=500 tool_rate=50 tool_workers=1,2 short_seconds=20 short_rate=0 json_out=
backend=both
weather_x=()
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backend=$2; shift ;;
    --phases) phases=$2; shift ;;
    --events) events=$2; shift ;;
    --conversations) conversations=$2; shift ;;
    --inflight) inflight=$2; shift ;;
    --token-delay-ms) delay=$2; shift ;;
    --tool-conversations) tool_conversations=$2; shift ;;
    --tool-rate) tool_rate=$2; shift ;;
    --tool-workers) tool_workers=$2; shift ;;
    --weather-x) weather_x+=(--weather-x "$2"); shift ;;
    --short-seconds) short_seconds=$2; shift ;;
    --short-rate) short_rate=$2; shift ;;
    --json) json_out=$2; shift ;;
    --history-conversations) history_conversations=$2; shift ;;
    --history-turns) history_turns=$2; shift ;;
    --history-max-messages) history_max_messages=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
for p in ${phases//,/ }; do
  case "$p" in
    throughput|inflight|realistic|tools|short|history) ;;
    *) echo "unknown phase $p (throughput, inflight, realistic, tools, short, history)" >&2; exit 2 ;;
  esac
done
[ "$backend" = both ] && backend=responses,assistants
[ "$backend" = all ] && backend=responses,assistants,chat
backends=${backend//,/ }
for b in $backends; do
  case "$b" in
    responses|assistants|chat) ;;
    *) echo "unknown backend $b (responses, assistants, chat, both, all)" >&2; exit 2 ;;
  esac
done
want() { case ",$phases," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

aw_install_deps
# Only what the benchmark runs (the unit tests need not build for it).
AW_BUILD_TOOL_ARGS="${AW_BUILD_TOOL_ARGS:-} assistant-worker aw-simulator weather_service" \
  aw_build "$AW_ROOT/build" -DCMAKE_BUILD_TYPE=Release
run=$(aw_run_dir_new)
trap 'aw_stop_all "$run" >/dev/null 2>&1' EXIT
aw_kafka_start "$run"
# Redis requires AUTH: aw_redis_start exports AW_REDIS_USERNAME and AW_REDIS_PASSWORD_FILE, which
# load.py's workers inherit (their environment is this one plus theirs).
aw_redis_start "$run"

drive() {
  "$AW_VENV/bin/python" "$AW_ROOT/tests/bench/load.py" --bootstrap "$(cat "$run/kafka/bootstrap")" \
    --redis-port "$(cat "$run/redis/port")" --worker "$AW_ROOT/build/assistant-worker" \
    --simulator "$AW_ROOT/build/aw-simulator" --run "$run" "$@"
}

# Phase by phase, each on every backend in turn (so that what the machine's other jobs do
# weighs on the backends alike): res[<backend>.<phase>] is load.py's JSON.
declare -A res
for b in $backends; do
  for p in throughput inflight realistic tools short history; do res[$b.$p]=null; done
done
for b in $backends; do
  if want throughput; then
    echo "[$b] throughput: $events events over $conversations conversations, instant simulator..." >&2
    res[$b.throughput]=$(drive throughput --backend "$b" --events "$events" --conversations "$conversations")
  fi
done
for b in $backends; do
  if want inflight; then
    echo "[$b] in flight: $inflight conversations, simulator pacing tokens ${delay} ms apart..." >&2
    res[$b.inflight]=$(drive inflight --backend "$b" --conversations "$inflight" --token-delay-ms "$delay")
  fi
done
for b in $backends; do
  if want realistic; then
    echo "[$b] realistic: $inflight conversations, 200-token answers paced 20 ms apart..." >&2
    res[$b.realistic]=$(drive realistic --backend "$b" --conversations "$inflight" --answer-tokens 200 \
      --token-delay-ms 20)
  fi
done
for b in $backends; do
  if want tools; then
    echo "[$b] tools: $tool_conversations plain then $tool_conversations tool events at $tool_rate/s, workers $tool_workers..." >&2
    res[$b.tools]=$(drive tools --backend "$b" --conversations "$tool_conversations" --rate "$tool_rate" \
      --tool-workers "$tool_workers" ${weather_x[@]+"${weather_x[@]}"})
  fi
done
for b in $backends; do
  if want short; then
    echo "[$b] short: $events 20-token events over $conversations conversations, then ${short_seconds} s at half the rate..." >&2
    res[$b.short]=$(drive short --backend "$b" --events "$events" --conversations "$conversations" \
      --answer-tokens 20 --seconds "$short_seconds" --rate "$short_rate")
  fi
done
for b in $backends; do
  if want history && [ "$b" = chat ]; then
    echo "[$b] history: $history_conversations conversations x $history_turns turns, history budget $history_max_messages messages..." >&2
    res[$b.history]=$(drive history --backend "$b" --conversations "$history_conversations" \
      --turns "$history_turns" --history-max-messages "$history_max_messages" --answer-tokens 20)
  fi
done
results=()  # one JSON object per backend: {"backend", "throughput", ..., "short"}
for b in $backends; do
  results+=("$(printf '{"backend": "%s", "throughput": %s, "inflight": %s, "realistic": %s, "tools": %s, "short": %s, "history": %s}' \
    "$b" "${res[$b.throughput]}" "${res[$b.inflight]}" "${res[$b.realistic]}" "${res[$b.tools]}" "${res[$b.short]}" \
    "${res[$b.history]}")")
done

if [ -n "$json_out" ]; then
  python3 -c 'import json, sys
print(json.dumps({r.pop("backend"): r for r in map(json.loads, sys.argv[1:])}))' "${results[@]}" >"$json_out"
fi

python3 - "${results[@]}" <<'PY'
import json, sys
results = [json.loads(a) for a in sys.argv[1:]]

def pcts(v, ps=("p50", "p99", "p99.9")):
    return "/".join(f"{v[p]:.0f}" if abs(v[p]) >= 10 else f"{v[p]:.1f}" for p in ps)

def cores(c):
    who = ("worker", "simulator", "kafka", "redis", "load.py", "other")
    return ", ".join(f"{k} {c[k]:.2f}" for k in who if k in c) + \
        f" (machine {c['machine']:.2f} of {c['cores']})"

def http(routes):
    return ", ".join(f"{v:.2f} {k.replace(' /v1/', ' /')}" for k, v in routes.items()) or "none"

base = next((r for r in results if r["backend"] == "responses"), None)

def ratio(r, *path):
    """This backend's worker CPU per event over the responses backend's (same phase, this
    invocation), or "-"."""
    def get(x):
        for k in path:
            x = x.get(k) if isinstance(x, dict) else None
        return x
    mine, ref = get(r), get(base) if base else None
    return f"{mine / ref:.2f}x" if mine is not None and ref else "-"

def hist_rows(h):
    """The chat backend's history figures (load.py history_figures()); none elsewhere."""
    if not h:
        return []
    return [
      ("  Redis bytes per stored turn", f"{h['bytes_per_turn']:.0f}"),
      ("  history Redis round trips per event", f"{h['round_trips_per_event']:.2f}"),
      ("  history loads / commits per event", f"{h['loads_per_event']:.2f} / {h['commits_per_event']:.2f}"),
    ]

def rows_of(r):
    """[(label, value)]: labels are the same for every backend (given the same options)."""
    tp, inf, real, tools, short, hist = (r.get(k) for k in ("throughput", "inflight", "realistic",
                                                            "tools", "short", "history"))
    chat = r["backend"] == "chat"
    rows = []
    if tp:
      rows += [
      ("happy path, instant simulator", ""),
      ("  events answered", f"{tp['events']} {tp['statuses']}"),
      ("  throughput (events/s)", f"{tp['events_per_s']:.0f}"),
      ("  worker CPU per event (us)", f"{tp['cpu_us_per_event']:.0f}"),
      ] + ([("  worker CPU per event, ratio to responses", ratio(r, "throughput", "cpu_us_per_event"))]
           if chat else []) + [
      ("  worker RSS at the end (KiB)", f"{tp['rss_kib']}"),
      ]
    if inf:
      rows += [
      (f"{inf['conversations']} conversations in flight, slow runs", ""),
      ("  active streams seen at the simulator", f"{inf['active_streams']}"),
      ("  worker RSS idle (KiB)", f"{inf['idle_rss_kib']}"),
      ("  worker RSS, all in flight (KiB)", f"{inf['rss_kib_all_in_flight']}"),
      ("  RSS per in-flight conversation (bytes)", f"{inf['rss_bytes_per_conversation']:.0f}"),
      ("  answered afterwards", f"{inf['answered']}"),
      ]
    if real:
      rows += [
      (f"realistic: {real['conversations']} in flight, {real['tokens_per_answer']} tokens {real['token_delay_ms']} ms apart", ""),
      ("  answered", f"{real['answered']}"),
      ("  worker CPU per event (us)", f"{real['cpu_us_per_event']:.0f}"),
      ] + ([("  worker CPU per event, ratio to responses", ratio(r, "realistic", "cpu_us_per_event"))]
           if chat else []) + [
      ("  worker CPU per token (us)", f"{real['cpu_us_per_token']:.2f}"),
      ("  HTTP requests per event", http(real["http_per_event"]) if "http_per_event" in real else "-"),
      ] + hist_rows(real.get("history")) + [(f"  latency {k} p50/p99/p99.9 (ms)", pcts(v)) for k, v in real["latency_ms"].items()]
    if tools:
      rows.append((f"tools: {tools['conversations']} plain, {tools['conversations']} get_weather (1 city), then "
                   f"both mixed; {tools['rate']:.0f}/s, instant service", ""))
      for n, t_r in tools["runs"].items():
        w = f"{n} worker" + ("s" if n != "1" else "")
        t, p = t_r["tool"], t_r["plain"]
        rows += [
          (f"  {w}: answered plain / tool / mixed", f"{p['answered']} {p['statuses']} / {t['answered']} {t['statuses']}, "
                                                     f"outputs {t['outcomes']} / {t_r['mixed']['answered']} {t_r['mixed']['statuses']}"),
          (f"  {w}: tool round trip (round_ms) p50/p99 (ms)", pcts(t["round_ms"], ("p50", "p99"))),
        ]
        if n != "1":
          rows += [
            (f"  {w}:   replies consumed by the other worker", f"{100 * t['replies_by_other']:.0f}%"),
            (f"  {w}:   round trip, reply consumed by the owner p50/p99", pcts(t["round_ms_self"], ("p50", "p99"))),
            (f"  {w}:   round trip, reply consumed by the other p50/p99", pcts(t["round_ms_other"], ("p50", "p99"))),
          ]
        rows += [(f"  {w}:   {k} p50/p99 (ms)", pcts(v, ("p50", "p99"))) for k, v in t["stages_ms"].items()]
        rows += [
          (f"  {w}: e2e, mixed run: plain p50/p99 (ms)", pcts(t_r["mixed"]["e2e_plain_ms"], ("p50", "p99"))),
          (f"  {w}: e2e, mixed run: tool p50/p99 (ms)", pcts(t_r["mixed"]["e2e_tool_ms"], ("p50", "p99"))),
          (f"  {w}: added e2e by one round trip p50/p99 (ms)", pcts(t_r["added_e2e_ms"], ("p50", "p99"))),
          (f"  {w}: worker CPU per plain / tool event (us)", f"{p['cpu_us_per_event']:.0f} / {t['cpu_us_per_event']:.0f}"),
          (f"  {w}: worker CPU per tool round trip (us)", f"{t_r['cpu_us_per_round_trip']:.0f}"),
          (f"  {w}: worker CPU idle (us/s, all workers)", f"{t_r['idle_cpu_us_per_s']:.0f}"),
        ]
    if short:
      m, h = short["max"], short["half"]
      rows += [
        (f"short: {short['tokens']}-token answers, instant simulator, {short['events']} over {short['conversations']} conversations", ""),
        ("  maximum throughput (events/s)", f"{m['events_per_s']:.0f}  ({m['events']} {m['statuses']})"),
        ("  worker CPU per event at maximum (us)", f"{m['cpu_us_per_event']:.0f}"),
      ] + ([("  worker CPU per event at maximum, ratio to responses",
             ratio(r, "short", "max", "cpu_us_per_event"))] if chat else []) + [
        ("  HTTP requests per event at maximum (incl. creating each conversation)",
         http(m["http_per_event"]) if "http_per_event" in m else "-"),
      ] + [(k.replace("  ", "  at maximum: ", 1), v) for k, v in hist_rows(m.get("history"))] + [
        ("  CPU in cores at maximum", cores(m["cpu_cores"])),
        ("  paced at half (events/s x s), answered", f"{h['rate']:.0f} x {h['seconds']:.0f}: {h['answered']}/{h['produced']} {h['statuses']}"),
        ("  HTTP requests per event (existing conversation)", http(h["http_per_event"])),
        ("  worker CPU per event at half (us)", f"{h['cpu_us_per_event']:.0f}"),
      ] + ([("  worker CPU per event at half, ratio to responses",
             ratio(r, "short", "half", "cpu_us_per_event"))] if chat else []) + [
        ("  CPU in cores at half", cores(h["cpu_cores"])),
      ] + [(k.replace("  ", "  at half: ", 1), v) for k, v in hist_rows(h.get("history"))] + (
        [("  at half: messages sent, last requests", f"max messages sent {h['messages_sent']['max']} <= "
          f"budget {h['messages_sent']['budget']} ({h['messages_sent']['requests']} requests)")]
        if h.get("messages_sent") else []) + [(f"  latency {k} p50/p99/p99.9 (ms)", pcts(v)) for k, v in h["latency_ms"].items()] + [
        ("  simulator alone, same HTTP sequence p50/p99/p99.9 (ms)", pcts(h["simulator_ms"])),
        ("  added latency e2e - simulator p50/p99/p99.9 (ms)", pcts(h["added_e2e_ms"])),
        ("  added latency in worker - simulator p50/p99/p99.9 (ms)", pcts(h["added_in_worker_ms"])),
      ]
    if hist:
      ms = hist["messages_sent"]
      rows += [
        (f"history: {hist['conversations']} conversations x {hist['turns']} turns, budget "
         f"{ms['budget']} messages", ""),
        ("  answered", f"{hist['answered']} {hist['statuses']}"),
        ("  worker CPU per event (us)", f"{hist['cpu_us_per_event']:.0f}"),
        ("  HTTP requests per event", http(hist["http_per_event"])),
      ] + hist_rows(hist["history"]) + [
        ("  messages sent per request, by turn (max)", " ".join(str(b["max"]) for b in ms["by_turn"])),
        ("  messages sent vs budget", f"max messages sent {ms['max']} <= budget {ms['budget']}"
         + ("" if ms["max"] <= ms["budget"] else "  ** OVER BUDGET **")),
      ]
    return rows

def keyed(rows):
    """[((section, label), label, value)]: a label is unique within its section only (the
    realistic and short sections both have "latency pickup")."""
    sec, out = "", []
    for k, v in rows:
        if not k.startswith(" "):
            sec = k
        out.append(((sec, k), k, v))
    return out

names = [r["backend"] for r in results]
per = [{key: v for key, _, v in keyed(rows_of(r))} for r in results]
labels = []  # (key, label) in order, the union over the backends: a label one backend
for r in results:  # alone has (chat's) goes after the label it follows in that backend's rows
    at = 0
    for key, k, _ in keyed(rows_of(r)):
        if (key, k) in labels:
            at = labels.index((key, k)) + 1
        else:
            labels.insert(at, (key, k))
            at += 1
WIDE = 40  # a value longer than this goes on lines of its own, one per backend
w = max([len(k) for _, k in labels] + [len("backend")])
cw = [max([len(n)] + [len(p.get(key, "-")) for key, _ in labels if len(p.get(key, "-")) <= WIDE])
      for n, p in zip(names, per)]
print(f"{'backend':<{w}}  " + "  ".join(f"{n:<{c}}" for n, c in zip(names, cw)).rstrip())
for key, k in labels:
    vals = [p.get(key, "-") for p in per]
    if all(len(v) <= WIDE for v in vals):
        print((f"{k:<{w}}  " + "  ".join(f"{v:<{c}}" for v, c in zip(vals, cw))).rstrip())
    else:
        print(k)
        for n, v in zip(names, vals):
            print(f"    {n + ':':<{max(map(len, names)) + 1}} {v}")
PY
