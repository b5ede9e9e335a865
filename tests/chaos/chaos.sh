#!/usr/bin/env bash
# tests/chaos/chaos.sh -- the chaos test (issue 4, part 5); tests/chaos/README.md explains it.
#
#   tests/chaos/chaos.sh            the long form: 2000 conversations x 5 messages, 5 min of chaos
#   tests/chaos/chaos.sh --short    the CI form (tests/run.sh): 150 conversations, 1 min of chaos
#   tests/chaos/chaos.sh --backend assistants   the workers' api.backend (responses|assistants;
#                                   default: AW_TEST_BACKEND, else responses)
#   tests/chaos/chaos.sh --help     every option (counts, duration, kill interval, fault rates, seed)
#
# Installs what is missing and builds the build dir it uses (--build DIR, default build/:
# the release build; AW_CHAOS_BUILD_DIR sets the default) unless --no-build is given, then runs
# tests/chaos/chaos.py with the repo's venv.  Exit 0 when every property held.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../../deploy/local/lib.sh
. "$ROOT/deploy/local/lib.sh"

build=${AW_CHAOS_BUILD_DIR:-build}
do_build=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) do_build=0 ;;
    --build) build=$2; args+=("$1" "$2"); shift ;;
    --build=*) build=${1#--build=}; args+=("$1") ;;
    -h|--help) do_build=0; args+=("$1") ;;
    *) args+=("$1") ;;
  esac
  shift
done
case "$build" in /*) ;; *) build="$ROOT/$build" ;; esac

if [ $do_build = 1 ]; then
  aw_install_deps || { aw_err "could not install the dependencies"; exit 2; }
  # An existing build dir keeps its configuration (ASan or release); a new one is a release build.
  if [ -f "$build/CMakeCache.txt" ]; then
    aw_build "$build" || exit 2
  else
    aw_build "$build" -DCMAKE_BUILD_TYPE=Release || exit 2
  fi
fi

# The Python process owns the run dir: it stops the stack on exit, SIGTERM and Ctrl-C.
exec env PYTHONDONTWRITEBYTECODE=1 "$AW_VENV/bin/python" -u "$ROOT/tests/chaos/chaos.py" \
  --build "$build" "${args[@]}"
