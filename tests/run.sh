#!/usr/bin/env bash
# tests/run.sh -- set everything up and run every test; .ci/run calls it.
#
#   1. install what is missing (apt packages, .venv, the Kafka jars)     deploy/local/lib.sh
#   2. build with ASan+UBSan into build-asan/, run the unit tests          ctest -L unit
#      then the deployment artefacts, with the release build: the Helm chart checked offline
#      (tests/deploy/check_chart.sh: lint, Kubernetes schemas, checkov, the binary accepting
#      every rendered configuration) and the image's runtime layout started against the local
#      stack (tests/deploy/check_rootfs.sh); AW_DEPLOY_CHECKS=0 skips both
#   3. integration tests against a real broker, redis-server, simulator   pytest tests/integration
#      (once per backend: AW_TEST_BACKEND=responses, then assistants, then chat)
#   4. the chaos test's short form (tests/chaos/chaos.sh --short, on the ASan build), once per
#      backend: workers SIGKILLed and restarted, Redis and Kafka restarted, API faults; one test
#      each in the summary
#   5. build the libFuzzer targets with clang into build-fuzz/ and run each for a bounded time
#      (AW_FUZZ_SECONDS, default 8: fourteen targets within the suite's 30 minutes; a crash fails the run)
#
# Ends with one line "N passed, N failed" over all of it; exits non-zero if anything failed.
# Logs of each step go to build-asan/test-logs/.  Options via environment:
#   AW_FUZZ_SECONDS=N   time per fuzz target (default 8; 0 skips fuzzing)
#   AW_BUILD_DIR, AW_FUZZ_BUILD_DIR  build dirs under the repo (default build-asan, build-fuzz)
#   AW_PYTEST_ARGS=...  extra pytest arguments (e.g. "-k happy -x")
#   AW_CHAOS=0          skip the chaos test; AW_CHAOS_ARGS=... extra arguments (e.g. "--seed 42")
#   AW_TEST_BACKENDS="responses assistants chat"  the backends of steps 3 and 4 (default: all three)
#   AW_OGX=1            also run tests/integration/test_ogx.py in step 3: installs (cached) and starts
#                       llama-cpp-python with SmolLM2 and OGX 1.5.0, and runs the worker against them
#                       (about 10 min more on a fresh machine, 2 min when cached; off by default to
#                       keep the suite within its time budget)
#   AW_REALMODEL=1      also run tests/integration/test_realmodel.py in step 3: the chat backend against
#                       llama-cpp-python with SmolLM2 (installed and cached like the above; AW_OGX=1
#                       implies it)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=../deploy/local/lib.sh
. "$ROOT/deploy/local/lib.sh"

FUZZ_SECONDS=${AW_FUZZ_SECONDS:-8}
BUILD=${AW_BUILD_DIR:-build-asan}
FUZZ_BUILD=${AW_FUZZ_BUILD_DIR:-build-fuzz}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
case "$FUZZ_BUILD" in /*) ;; *) FUZZ_BUILD="$ROOT/$FUZZ_BUILD" ;; esac
export AW_BUILD_DIR="$BUILD"
LOGS="$BUILD/test-logs"
PASSED=0
FAILED=0
T0=$(date +%s)
CHILD=

# SIGTERM/SIGINT: pass it to the running step (pytest stops its services in its finalizers),
# then report.
on_signal() {
  [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null && wait "$CHILD" 2>/dev/null
  echo "interrupted"
  echo "$PASSED passed, $((FAILED + 1)) failed"
  exit 130
}
trap on_signal TERM INT

section() { printf '\n== %s ==\n' "$*"; }
fail_step() { printf 'FAILED: %s\n' "$*"; FAILED=$((FAILED + 1)); }

# run_bg LOG CMD...: run CMD in the background (so signals reach it), output to LOG; returns its
# exit code.
run_bg() {
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  CHILD=$!
  wait "$CHILD"
  local rc=$?
  CHILD=
  return $rc
}

# ---- 1. install ---------------------------------------------------------------------------
section "setup"
if ! aw_install_deps; then
  fail_step "installing dependencies"
  echo "$PASSED passed, $FAILED failed"
  exit 1
fi
echo "dependencies ok ($(java -version 2>&1 | head -1); $("$AW_VENV/bin/python" --version))"

# ---- 2. ASan build + unit tests -------------------------------------------------------------
section "build (ASan+UBSan) and unit tests"
mkdir -p "$LOGS"
BUILD_OK=1
# Keep going past a failing file (ninja -k 0): whatever did build is still tested, and what
# is missing fails in the steps below.
if AW_BUILD_TOOL_ARGS="-k 0" aw_build "$BUILD" -DAW_SANITIZE=ON; then
  echo "built $BUILD/"
else
  fail_step "ASan build (log: $BUILD/aw-build.log)"
  [ -f "$BUILD/CTestTestfile.cmake" ] || BUILD_OK=0
fi
# The release build (what the demo and the benchmark run) too: optimisation enables warnings
# (-Wmaybe-uninitialized, -Wformat-truncation) that the ASan build does not see.
RELEASE_BUILD=${AW_RELEASE_BUILD_DIR:-$ROOT/build}
if aw_build "$RELEASE_BUILD" -DCMAKE_BUILD_TYPE=Release; then
  echo "built $RELEASE_BUILD/ (release)"
else
  fail_step "release build (log: $RELEASE_BUILD/aw-build.log)"
fi

if [ $BUILD_OK = 1 ]; then
  ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_bg "$LOGS/ctest.log" ctest --test-dir "$BUILD" --output-on-failure -L unit -j 2
  rc=$?
  summary=$(grep -E 'tests passed|No tests were found' "$LOGS/ctest.log" | tail -1)
  if [[ $summary =~ ([0-9]+)\ tests\ failed\ out\ of\ ([0-9]+) ]]; then
    f=${BASH_REMATCH[1]} total=${BASH_REMATCH[2]}
    PASSED=$((PASSED + total - f)); FAILED=$((FAILED + f))
    echo "ctest: $summary"
    if [ "$f" -gt 0 ]; then
      # Each failing test's own output (ctest --output-on-failure), then ctest's list.
      grep -E -A25 '\*\*\*(Failed|Exception)|ERROR: (Address|Leak)Sanitizer|runtime error' "$LOGS/ctest.log" | head -100
      sed -n '/The following tests FAILED/,$p' "$LOGS/ctest.log"
      echo "(full log: $LOGS/ctest.log)"
    fi
  elif [ $rc = 0 ]; then
    echo "ctest: no unit tests registered"
  else
    tail -n 30 "$LOGS/ctest.log"
    fail_step "ctest (exit $rc, log: $LOGS/ctest.log)"
  fi
fi

# ---- 2b. deployment artefacts (the Helm chart, the image's runtime layout) ---------------------
# Each script prints "ok:"/"FAILED:" lines and "N passed, N failed", added to the counts here.
for check in check_chart check_rootfs; do
  section "deployment: tests/deploy/$check.sh (release build)"
  if [ "${AW_DEPLOY_CHECKS:-1}" = 0 ]; then echo "skipped (AW_DEPLOY_CHECKS=0)"; continue; fi
  args=(--binary "$RELEASE_BUILD/assistant-worker")
  [ $check = check_chart ] && args+=(--out "$LOGS/chart-check")
  run_bg "$LOGS/$check.log" "$ROOT/tests/deploy/$check.sh" "${args[@]}"
  rc=$?
  grep -E '^(FAILED|chart check:|run dir:)' "$LOGS/$check.log"
  if [[ $(tail -n 1 "$LOGS/$check.log") =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    PASSED=$((PASSED + BASH_REMATCH[1])); FAILED=$((FAILED + BASH_REMATCH[2]))
    echo "$check: ${BASH_REMATCH[1]} passed, ${BASH_REMATCH[2]} failed (log: $LOGS/$check.log)"
    [ $rc = 0 ] || [ "${BASH_REMATCH[2]}" != 0 ] || fail_step "$check exited $rc"
  else
    tail -n 20 "$LOGS/$check.log"
    fail_step "$check exited $rc without a summary (log: $LOGS/$check.log)"
  fi
done

# ---- 3. integration tests ---------------------------------------------------------------------
# Once per backend (AW_TEST_BACKEND): the suite is backend-neutral, tests about one backend's API
# skip on the others, and the files that pin the backend per test, test the simulator alone, or
# test what the worker decides before any backend is asked (poison pills, event-id claims, the key
# rule: the same code on every backend) run in the first pass only (FIRST_PASS_ONLY).
BACKENDS=${AW_TEST_BACKENDS:-responses assistants chat}
FIRST_PASS_ONLY=(test_backends.py test_ogx.py test_realmodel.py test_simulator_chat.py
                 test_simulator_responses.py test_simulator_tools.py test_stack.py test_secrets.py
                 test_shutdown.py test_bad_input.py test_backpressure.py test_cli.py test_group.py
                 test_infra_auth.py test_rebalance.py test_key_rule.py test_tool_signing.py
                 test_poison.py test_event_ids.py test_files.py test_simulator_files.py
                 test_sync.py test_simulator_file_search.py test_file_search.py
                 test_simulator_codeint.py test_simulator_codeint_assistants.py
                 test_schema_examples.py)
pass_no=0
for backend in $BACKENDS; do
  pass_no=$((pass_no + 1))
  section "integration tests, $backend backend (pytest, Kafka KRaft + redis-server + simulator)"
  [ $BUILD_OK = 1 ] || continue
  junit="$LOGS/pytest-$backend.xml"
  rm -f "$junit"
  extra=()
  if [ $pass_no != 1 ]; then
    for f in "${FIRST_PASS_ONLY[@]}"; do extra+=("--ignore=tests/integration/$f"); done
  fi
  # Strict: a missing worker/simulator binary is a failure here, not a skip.
  # shellcheck disable=SC2086
  AW_TEST_BACKEND=$backend AW_TEST_STRICT=1 PYTHONDONTWRITEBYTECODE=1 "$AW_VENV/bin/python" -m pytest \
    tests/integration -q -p no:cacheprovider -rfEs --junitxml="$junit" "${extra[@]}" ${AW_PYTEST_ARGS:-} 2>&1 &
  CHILD=$!
  wait "$CHILD"
  rc=$?
  CHILD=
  if [ -f "$junit" ]; then
    read -r t f e s < <("$AW_VENV/bin/python" - "$junit" <<'EOF'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
suites = [r] if r.tag == "testsuite" else list(r)
tot = lambda k: sum(int(x.get(k, 0)) for x in suites)
print(tot("tests"), tot("failures"), tot("errors"), tot("skipped"))
EOF
)
    PASSED=$((PASSED + t - f - e - s)); FAILED=$((FAILED + f + e))
    echo "pytest on $backend: $((t - f - e - s)) passed, $((f + e)) failed, $s skipped ($junit)"
    if [ $rc != 0 ] && [ $rc != 5 ] && [ $((f + e)) = 0 ]; then
      fail_step "pytest on $backend exited $rc"
    fi
  else
    fail_step "pytest on $backend exited $rc without a report"
  fi
done

# ---- 4. chaos test (short form) -----------------------------------------------------------------
for backend in $BACKENDS; do
  section "chaos test, short form, $backend backend (tests/chaos/chaos.sh --short --backend $backend)"
  if [ "${AW_CHAOS:-1}" = 0 ]; then
    echo "skipped (AW_CHAOS=0)"
    continue
  fi
  [ $BUILD_OK = 1 ] || continue
  chaos_log="$LOGS/chaos-$backend.log"
  # shellcheck disable=SC2086
  run_bg "$chaos_log" "$ROOT/tests/chaos/chaos.sh" --short --no-build --build "$BUILD" \
    --backend "$backend" ${AW_CHAOS_ARGS:-}
  rc=$?
  # The counts table and the verdicts (and any violation's evidence) from the log.
  if grep -q '^chaos test (' "$chaos_log"; then
    sed -n '/^chaos test (/,$p' "$chaos_log"
  else
    tail -n 30 "$chaos_log"
  fi
  if [ $rc = 0 ]; then
    PASSED=$((PASSED + 1))
  else
    fail_step "chaos test on $backend (exit $rc, log: $chaos_log)"
  fi
done

# ---- 5. fuzzing ------------------------------------------------------------------------------
section "fuzz targets (libFuzzer, ${FUZZ_SECONDS}s each)"
shopt -s nullglob
fuzz_src=(tests/fuzz/fuzz_*.c)
if [ "$FUZZ_SECONDS" = 0 ]; then
  echo "skipped (AW_FUZZ_SECONDS=0)"
elif [ ${#fuzz_src[@]} = 0 ]; then
  echo "no tests/fuzz/fuzz_*.c"
else
  targets=()
  for src in "${fuzz_src[@]}"; do targets+=("$(basename "$src" .c)"); done
  # The whole tree is compiled with coverage instrumentation (fuzzer-no-link) so libFuzzer
  # sees the parsers' branches, not just the harness'.
  mkdir -p "$FUZZ_BUILD"
  if ! { cmake -S "$ROOT" -B "$FUZZ_BUILD" -G Ninja -DCMAKE_C_COMPILER=clang -DAW_FUZZ=ON \
           -DAW_SANITIZE=ON -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link &&
         cmake --build "$FUZZ_BUILD" --target "${targets[@]}"; } >"$FUZZ_BUILD/aw-build.log" 2>&1; then
    tail -n 30 "$FUZZ_BUILD/aw-build.log"
    fail_step "fuzz build (log: $FUZZ_BUILD/aw-build.log)"
  else
    mkdir -p "$FUZZ_BUILD/artifacts"
    for t in "${targets[@]}"; do
      corpus="tests/fuzz/corpus-$t"   # gitignored, grows across local runs
      mkdir -p "$corpus"
      seeds=()
      [ -d "tests/fuzz/seeds/$t" ] && seeds=("tests/fuzz/seeds/$t")
      ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_bg "$LOGS/$t.log" "$FUZZ_BUILD/$t" -max_total_time="$FUZZ_SECONDS" -timeout=10 \
          -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$FUZZ_BUILD/artifacts/$t-" \
          "$corpus" "${seeds[@]}"
      rc=$?
      runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$LOGS/$t.log" | grep -oE '[0-9]+$')
      if [ $rc = 0 ]; then
        echo "$t: ok (${runs:-?} runs)"
        PASSED=$((PASSED + 1))
      else
        grep -E -A20 'ERROR: |runtime error|==[0-9]+== ' "$LOGS/$t.log" | head -40
        ls "$FUZZ_BUILD/artifacts/$t"-* 2>/dev/null | sed 's/^/  reproducer: /'
        fail_step "$t (exit $rc, log: $LOGS/$t.log)"
      fi
    done
  fi
fi

section "summary ($(( $(date +%s) - T0 )) s)"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
