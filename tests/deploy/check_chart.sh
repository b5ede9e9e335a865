#!/usr/bin/env bash
# tests/deploy/check_chart.sh -- the Helm chart (deploy/helm/assistant-worker) checked offline.
#
#   tests/deploy/check_chart.sh [--binary PATH] [--out DIR]
#
# No cluster is needed, or reached.  What it checks, one "ok: ..." or "FAILED: ..." line each,
# then "N passed, N failed" (tests/run.sh adds those to its own counts):
#   1. helm lint --strict, with the default values and each realistic override in values/;
#   2. helm template of each scenario below, and for each rendering (check_rendered.py): the
#      built-in objects against the Kubernetes schemas (kubernetes-validate, strict), what the
#      objects must hold together (probes on the worker's port, autoscaler bounded by the
#      partitions, network policy covering Kafka/Redis/API/DNS, no secret in the ConfigMap, ...)
#      and the drift check: the binary (--binary) must accept the rendered config.json and every
#      AW_* variable of the pod (`assistant-worker run --print-config`);
#   3. values that must be refused: helm template fails with the chart's message, or the drift
#      check fails and names the key or variable the binary does not know;
#   4. checkov (policy checks) on the renderings and on deploy/container/Dockerfile, once: every
#      finding is either fixed or skipped in place with its reason (checkov.io/skip annotations,
#      #checkov:skip comments), so any new finding fails;
#   5. every value of values.yaml is described in the chart's README.
#
# Tools, installed once into the cache (idempotent, under a lock): Helm built from the Go module
# proxy (`go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION`), and a venv of its own with
# kubernetes-validate and checkov (keyed by their versions; never the test venv, whose packages
# checkov's many dependencies would disturb).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/tests/deploy"
CHART="$ROOT/deploy/helm/assistant-worker"
HELM_VERSION=v3.22.0
KV_VERSION=1.37.0
CHECKOV_VERSION=3.3.30
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a current one.
K8S_VERSIONS=1.25.0,1.37.0
# What `helm template` renders for (offline, it assumes 1.20, below the chart's kubeVersion).
KUBE_VERSION=1.30.0
CACHE=${AW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/assistant-worker}
HELM="$CACHE/helm-$HELM_VERSION/helm"
VENV="$CACHE/chartcheck-venv-kv$KV_VERSION-ck$CHECKOV_VERSION"
BIN="$ROOT/build/assistant-worker"
OUT="$ROOT/build/chart-check"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "check_chart.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
PASSED=0
FAILED=0
ok() { printf 'ok: %s\n' "$*"; PASSED=$((PASSED + 1)); }
fail() { printf 'FAILED: %s\n' "$*"; FAILED=$((FAILED + 1)); }
finish() { echo "$PASSED passed, $FAILED failed"; [ "$FAILED" = 0 ]; exit $?; }
t0=$(date +%s)

# ---- tools -----------------------------------------------------------------------------------
install_helm() {
  [ -x "$HELM" ] && return 0
  local go
  go=$(command -v go || echo /usr/local/go/bin/go)
  [ -x "$go" ] || { echo "no Go toolchain (go, /usr/local/go/bin/go) to build Helm with" >&2; return 1; }
  mkdir -p "$(dirname "$HELM")"
  (
    flock 9
    [ -x "$HELM" ] && exit 0
    echo "building Helm $HELM_VERSION from the Go module proxy into $(dirname "$HELM")" >&2
    tmp=$(mktemp -d "$(dirname "$HELM")/gobin.XXXXXX")
    # CGO off: a static binary, no C toolchain needed.
    if CGO_ENABLED=0 GOBIN="$tmp" "$go" install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >"$tmp.log" 2>&1; then
      mv "$tmp/helm" "$HELM" && rm -rf "$tmp" "$tmp.log"
    else
      tail -n 20 "$tmp.log" >&2
      rm -rf "$tmp"
      exit 1
    fi
  ) 9>"$(dirname "$HELM")/.lock"
}

install_venv() {
  [ -f "$VENV/.installed" ] && return 0
  mkdir -p "$CACHE"
  (
    flock 9
    [ -f "$VENV/.installed" ] && exit 0
    echo "installing kubernetes-validate $KV_VERSION and checkov $CHECKOV_VERSION into $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV" &&
      "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        "kubernetes-validate==$KV_VERSION" "checkov==$CHECKOV_VERSION" >"$CACHE/chartcheck-pip.log" 2>&1 ||
      { tail -n 20 "$CACHE/chartcheck-pip.log" >&2; rm -rf "$VENV"; exit 1; }
    touch "$VENV/.installed"
  ) 9>"$CACHE/.chartcheck.lock"
}

if install_helm; then ok "Helm $HELM_VERSION ($("$HELM" version --short 2>/dev/null))"; else fail "building Helm $HELM_VERSION"; finish; fi
if install_venv; then ok "kubernetes-validate $KV_VERSION and checkov $CHECKOV_VERSION in $VENV"; else fail "installing the chart-check venv"; finish; fi
PY="$VENV/bin/python"
[ -x "$BIN" ] || { fail "no worker binary at $BIN (the drift check runs it)"; finish; }
rm -rf "$OUT"
mkdir -p "$OUT/renders" "$OUT/logs"
t_tools=$(date +%s)

# ---- 1. lint -----------------------------------------------------------------------------------
GOOD_VALUES=(production chat-static assistants-keda)
if out=$("$HELM" lint --strict "$CHART" 2>&1); then ok "helm lint --strict (default values)"; else fail "helm lint --strict (default values)"; echo "$out"; fi
for v in "${GOOD_VALUES[@]}"; do
  if out=$("$HELM" lint --strict "$CHART" -f "$HERE/values/$v.yaml" 2>&1); then
    ok "helm lint --strict -f values/$v.yaml"
  else
    fail "helm lint --strict -f values/$v.yaml"; echo "$out"
  fi
done

# ---- 2. renderings ------------------------------------------------------------------------------
# name | values file | APIs the cluster serves (offline: --api-versions) | partitions | kinds expected
OPS_APIS="monitoring.coreos.com/v1/ServiceMonitor monitoring.coreos.com/v1/PrometheusRule"
KEDA_API="keda.sh/v1alpha1/ScaledObject"
BASE_KINDS=ConfigMap,Deployment,NetworkPolicy,PodDisruptionBudget,Service,ServiceAccount
SCENARIOS=(
  "default||-|12|$BASE_KINDS,HorizontalPodAutoscaler"
  "default-keda-prometheus||$KEDA_API $OPS_APIS|12|$BASE_KINDS,ScaledObject,ServiceMonitor,PrometheusRule"
  "production|production.yaml|$OPS_APIS|24|$BASE_KINDS,HorizontalPodAutoscaler,ServiceMonitor,PrometheusRule"
  "chat-static|chat-static.yaml|$KEDA_API $OPS_APIS|6|$BASE_KINDS"
  "assistants-keda|assistants-keda.yaml|$OPS_APIS|12|$BASE_KINDS,ScaledObject,ServiceMonitor,PrometheusRule"
)
render() {  # render NAME VALUES APIS -> $OUT/renders/NAME.yaml; helm's stderr in $OUT/logs
  local name=$1 values=$2 apis=$3 args=()
  [ -n "$values" ] && args+=(-f "$HERE/values/$values")
  if [ "$apis" != - ]; then for a in $apis; do args+=(--api-versions "$a"); done; fi
  "$HELM" template assistant-worker "$CHART" --namespace assistants --kube-version "$KUBE_VERSION" "${args[@]}" \
    >"$OUT/renders/$name.yaml" 2>"$OUT/logs/$name.helm.log"
}
for s in "${SCENARIOS[@]}"; do
  IFS='|' read -r name values apis parts kinds <<<"$s"
  if ! render "$name" "$values" "$apis"; then
    fail "helm template $name: $(tail -n 3 "$OUT/logs/$name.helm.log")"
    rm -f "$OUT/renders/$name.yaml"
    continue
  fi
  ok "helm template $name"
  "$PY" "$HERE/check_rendered.py" --render "$OUT/renders/$name.yaml" --scenario "$name" \
    --partitions "$parts" --expect-kinds "$kinds" --binary "$BIN" --k8s-versions "$K8S_VERSIONS" \
    >"$OUT/logs/$name.check.log" 2>&1
  while read -r line; do
    case "$line" in
      ok:*) ok "${line#ok: }" ;;
      FAILED:*) fail "${line#FAILED: }" ;;
    esac
  done <"$OUT/logs/$name.check.log"
  grep -q "checks passed" "$OUT/logs/$name.check.log" ||
    { fail "check_rendered.py $name did not finish"; tail -n 20 "$OUT/logs/$name.check.log"; }
done

# ---- 3. values that must be refused ----------------------------------------------------------------
refused_by_chart() {  # VALUES EXPECTED-MESSAGE
  if "$HELM" template assistant-worker "$CHART" --kube-version "$KUBE_VERSION" -f "$HERE/values/$1" >/dev/null 2>"$OUT/logs/$1.log"; then
    fail "values/$1 must not render"
  elif grep -q "$2" "$OUT/logs/$1.log"; then
    ok "values/$1 refused: $2"
  else
    fail "values/$1 refused, but not with \"$2\": $(tail -n 2 "$OUT/logs/$1.log")"
  fi
}
refused_by_binary() {  # VALUES EXPECTED-FAILURE-LINE
  local name=${1%.yaml}
  render "$name" "$1" - || { fail "values/$1 should render: $(tail -n 3 "$OUT/logs/$name.helm.log")"; return; }
  if "$PY" "$HERE/check_rendered.py" --render "$OUT/renders/$name.yaml" --scenario "$name" --partitions 12 \
       --expect-kinds "$BASE_KINDS,HorizontalPodAutoscaler" --binary "$BIN" >"$OUT/logs/$name.check.log" 2>&1; then
    fail "values/$1: the drift check passed a chart the binary does not match"
  elif grep -q "^FAILED: .*$2" "$OUT/logs/$name.check.log"; then
    ok "values/$1: the drift check fails: $(grep -m1 "^FAILED: .*$2" "$OUT/logs/$name.check.log" | cut -c9-)"
  else
    fail "values/$1: the drift check failed for another reason: $(grep -m1 '^FAILED' "$OUT/logs/$name.check.log")"
  fi
  rm -f "$OUT/renders/$name.yaml"  # not one for checkov
}
refused_by_chart bad-replicas.yaml "exceeds autoscaling.requestsTopicPartitions"
refused_by_chart bad-secret-in-config.yaml "a secret does not belong in the ConfigMap"
refused_by_binary bad-unknown-key.yaml 'unknown key \\"worker.max_inflight\\"'
refused_by_binary bad-unknown-env.yaml "AW_MAX_INFLIGHT is read by the binary"

# ---- 4. policy checks (checkov), once over every rendering and the Dockerfile --------------------
t_ck=$(date +%s)
# One directory, one run (checkov's start-up is most of its time): the renderings and a copy of
# the Dockerfile (given with -f beside -d, checkov scans only the directory).
cp "$ROOT/deploy/container/Dockerfile" "$OUT/renders/Dockerfile"
"$VENV/bin/checkov" --compact --output json --skip-download --framework kubernetes dockerfile \
  -d "$OUT/renders" >"$OUT/checkov.json" 2>"$OUT/logs/checkov.log"
"$PY" - "$OUT/checkov.json" >"$OUT/logs/checkov.summary" <<'EOF'
import json, sys
raw = open(sys.argv[1]).read().strip()
reports = json.loads(raw) if raw else []
if isinstance(reports, dict):
    reports = [reports]
passed = failed = 0
for r in reports:
    res = r.get("results", {})
    passed += r.get("summary", {}).get("passed", 0)
    print(f"REPORT {r.get('check_type')} {r.get('summary', {}).get('resource_count')} resources "
          f"{r.get('summary', {}).get('passed')} passed {r.get('summary', {}).get('failed')} failed "
          f"{r.get('summary', {}).get('skipped')} skipped")
    for c in res.get("failed_checks", []):
        failed += 1
        print(f"FINDING {r.get('check_type')} {c['check_id']} {c.get('resource')} "
              f"({c.get('file_path')}): {c.get('check_name')}")
    for c in res.get("skipped_checks", []):
        print(f"SKIPPED {r.get('check_type')} {c['check_id']} {c.get('resource')}: "
              f"{(c.get('check_result') or {}).get('suppress_comment', '')}")
print(f"TOTAL {passed} {failed}")
EOF
if ! read -r _ ck_pass ck_fail < <(grep '^TOTAL' "$OUT/logs/checkov.summary"); then
  fail "checkov did not report (log: $OUT/logs/checkov.log)"; tail -n 20 "$OUT/logs/checkov.log"
elif ! grep -q '^REPORT kubernetes' "$OUT/logs/checkov.summary" || ! grep -q '^REPORT dockerfile' "$OUT/logs/checkov.summary"; then
  fail "checkov did not scan both the renderings and the Dockerfile: $(grep '^REPORT' "$OUT/logs/checkov.summary" | tr '\n' ' ')"
elif [ "$ck_fail" = 0 ] && [ "$ck_pass" -gt 0 ]; then
  ok "checkov: $ck_pass checks passed, 0 findings, $(grep -c '^SKIPPED' "$OUT/logs/checkov.summary") skipped with a reason in place ($(( $(date +%s) - t_ck )) s)"
else
  grep '^FINDING' "$OUT/logs/checkov.summary" | sort -u | sed 's/^/  /'
  fail "checkov: $ck_fail findings (fix them, or skip each in place with its reason)"
fi

# ---- 5. the values are documented ----------------------------------------------------------------
if out=$("$PY" - "$CHART/values.yaml" "$CHART/README.md" <<'EOF'
import sys, yaml
values = yaml.safe_load(open(sys.argv[1]))
readme = open(sys.argv[2]).read()
def leaves(d, p=""):
    for k, v in d.items():
        # config is the worker's own file: documented in README.md's configuration table.
        if isinstance(v, dict) and v and p + k != "config" and not p.startswith(("config.", "secretEnv.", "secretFiles.")):
            yield from leaves(v, p + k + ".")
        else:
            yield p + k
missing = [k for k in leaves(values) if f"`{k}`" not in readme]
print(", ".join(missing))
sys.exit(1 if missing else 0)
EOF
); then ok "every value of values.yaml is described in the chart's README"
else fail "values not described in deploy/helm/assistant-worker/README.md: $out"; fi

echo "chart check: tools $((t_tools - t0)) s, checks $(( $(date +%s) - t_tools )) s; renderings in $OUT/renders"
finish
