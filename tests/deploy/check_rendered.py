#!/usr/bin/env python3
"""check_rendered.py -- what a rendering of the Helm chart must hold, and that it matches the binary.

    check_rendered.py --render FILE --scenario NAME --partitions N --expect-kinds K1,K2,...
                      [--binary assistant-worker] [--k8s-versions 1.25.0,1.34.0]

Why a script of our own beside kubernetes-validate and checkov: those check each object alone
(its schema; generic hardening rules).  What breaks this service in a cluster is between the
objects and between the chart and the binary: a probe on a port the worker does not serve, an
autoscaler allowed past the requests topic's partitions, a NetworkPolicy that forgets the Redis
port, a ConfigMap key or an environment variable that the binary does not know (it refuses
unknown keys; an unknown variable is silently ignored), a secret that lands in the ConfigMap.
Each check prints "ok: <scenario>: <what>" or "FAILED: <scenario>: <what>: <why>";
tests/deploy/check_chart.sh counts those lines.  Exit status: 0 when every check passed.

The drift checks run the binary: `run --config <the rendered config.json> --print-config` with
the container's environment as the pod would have it (a sample pod name, sample secret values,
secret files written to a temp dir).  It must start (exit 0: every key of the file and every
value is accepted), every configuration key of the chart must be one --print-config prints, and
each AW_* variable must change what --print-config prints when it is left out (or, for a
variable with no trace there, at least be named in the binary).
"""
import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

RESULTS = {"ok": 0, "failed": 0}
SCENARIO = "?"
SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "_KEY")
SECRET_CONFIG_KEYS = {"api_key", "key", "password", "tool_secret", "tool_secret_previous", "openai_api_key",
                      "sasl.password", "ssl.key.password", "ssl.keystore.password"}
SECRETS_MOUNT = "/var/run/secrets/assistant-worker/"
CRD_GROUPS = ("keda.sh/", "monitoring.coreos.com/")


def check(what, ok, why=""):
    if ok:
        RESULTS["ok"] += 1
        print(f"ok: {SCENARIO}: {what}")
    else:
        RESULTS["failed"] += 1
        print(f"FAILED: {SCENARIO}: {what}: {why}")
    return ok


def matches(selector, labels):
    """A matchLabels selector selects these labels."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def config_of(objs):
    cms = [o for o in objs if o["kind"] == "ConfigMap"]
    return json.loads(cms[0]["data"]["config.json"]) if cms else {}


def key_paths(doc, prefix=""):
    """Key paths of a config document down to its scalars; kafka.properties, assistants and
    functions are free-form or lists and end the walk (the binary's own parse checks inside)."""
    out = []
    for k, v in doc.items():
        p = f"{prefix}{k}"
        if isinstance(v, dict) and p not in ("kafka.properties", "functions"):
            out += key_paths(v, p + ".")
        else:
            out.append(p)
    return out


def secret_keys(doc, prefix=""):
    found = []
    for k, v in doc.items():
        p = f"{prefix}{k}"
        if k in SECRET_CONFIG_KEYS:
            found.append(p)
        if isinstance(v, dict):
            found += secret_keys(v, p + ".")
    return found


# ---- the objects ------------------------------------------------------------------------------

def check_schemas(objs, versions):
    """Built-in kinds against the Kubernetes OpenAPI schemas kubernetes-validate ships (strict:
    an unknown field fails); custom resources (KEDA, Prometheus operator) have no upstream
    schema there and are checked structurally in check_objects."""
    import kubernetes_validate
    builtin = [o for o in objs if not o["apiVersion"].startswith(CRD_GROUPS)]
    for v in versions:
        errors = []
        for o in builtin:
            try:
                kubernetes_validate.validate(o, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{o['kind']}: {e.message} at {'.'.join(str(p) for p in e.path)}")
            except Exception as e:  # a version it does not ship, a kind it does not know
                errors.append(f"{o['kind']}: {type(e).__name__}: {e}")
        check(f"{len(builtin)} built-in objects valid against the Kubernetes {v} schemas (strict)",
              not errors, "; ".join(errors))


def check_objects(objs, args):
    kinds = sorted({o["kind"] for o in objs})
    expect = sorted(args.expect_kinds.split(","))
    check(f"rendered kinds are {','.join(expect)}", kinds == expect, f"got {','.join(kinds)}")
    dep = next((o for o in objs if o["kind"] == "Deployment"), None)
    if not check("one Deployment", dep is not None, "none rendered"):
        return
    conf = config_of(objs)
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    c = next((x for x in spec["containers"] if x["name"] == "worker"), spec["containers"][0])
    env = {e["name"]: e for e in c.get("env", [])}

    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    check("pod runs as non-root with seccomp RuntimeDefault",
          psc.get("runAsNonRoot") is True and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
          and (psc.get("runAsUser") or 0) > 0, json.dumps(psc))
    check("container: no privilege escalation, read-only root, capabilities dropped",
          csc.get("allowPrivilegeEscalation") is False and csc.get("readOnlyRootFilesystem") is True
          and "ALL" in csc.get("capabilities", {}).get("drop", []) and not csc.get("privileged"),
          json.dumps(csc))
    check("automountServiceAccountToken is false", spec.get("automountServiceAccountToken") is False)
    res = c.get("resources", {})
    check("requests and limits set", bool(res.get("requests", {}).get("cpu")) and
          bool(res.get("requests", {}).get("memory")) and bool(res.get("limits", {}).get("memory")),
          json.dumps(res))

    port = next((p["containerPort"] for p in c.get("ports", []) if p.get("name") == "ops"), None)
    hp = env.get("AW_HEALTH_PORT", {}).get("value")
    check("the ops port is the worker's AW_HEALTH_PORT", port is not None and str(port) == str(hp),
          f"containerPort {port}, AW_HEALTH_PORT {hp}")
    probes = {k: c.get(k, {}).get("httpGet", {}) for k in ("livenessProbe", "readinessProbe", "startupProbe")}
    check("liveness probes /healthz, readiness /readyz, on the ops port",
          probes["livenessProbe"].get("path") == "/healthz" and probes["readinessProbe"].get("path") == "/readyz"
          and all(p.get("port") in ("ops", port) for p in probes.values()), json.dumps(probes))

    grace_ms = conf.get("worker", {}).get("shutdown_grace_ms", 30000)
    tgp = spec.get("terminationGracePeriodSeconds", 30)
    check("terminationGracePeriodSeconds covers the worker's grace and its last commit",
          tgp >= -(-grace_ms // 1000) + 10, f"{tgp} s for a {grace_ms} ms grace + 10 s commit")

    group = conf.get("kafka", {}).get("group_id", "assistant-worker")
    pn = env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if "AW_KAFKA_TRANSACTIONAL_ID" in env or "AW_KAFKA_GROUP_INSTANCE_ID" in env:
        check("transactional id and group instance id come from the pod name",
              pn == "metadata.name"
              and env.get("AW_KAFKA_TRANSACTIONAL_ID", {}).get("value", f"{group}.$(POD_NAME)") == f"{group}.$(POD_NAME)"
              and env.get("AW_KAFKA_GROUP_INSTANCE_ID", {}).get("value", "$(POD_NAME)") == "$(POD_NAME)",
              json.dumps({k: env.get(k) for k in ("POD_NAME", "AW_KAFKA_TRANSACTIONAL_ID", "AW_KAFKA_GROUP_INSTANCE_ID")}))

    literal = [n for n, e in env.items() if any(w in n for w in SECRET_WORDS) and "value" in e
               and not str(e["value"]).startswith(SECRETS_MOUNT)]
    check("secret variables come from Secrets, never literal values", not literal, ", ".join(literal))
    leaked = secret_keys(conf)
    check("the ConfigMap holds no secret", not leaked, ", ".join(leaked))
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    cm = next((o for o in objs if o["kind"] == "ConfigMap"), {})
    check("the config volume mounts the rendered ConfigMap",
          vols.get("config", {}).get("configMap", {}).get("name") == cm.get("metadata", {}).get("name"))
    for name, v in vols.items():
        if "secret" in v:
            check(f"secret volume {name} is read-only and not world-readable",
                  (v["secret"].get("defaultMode", 0o644) & 0o007) == 0
                  and all(m.get("readOnly") for m in c["volumeMounts"] if m["name"] == name))

    tsc = spec.get("topologySpreadConstraints", [])
    check("topology spread over zones and nodes selects the pods",
          {t["topologyKey"] for t in tsc} >= {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
          and all(matches(t.get("labelSelector", {}).get("matchLabels"), labels) for t in tsc))

    # Replicas and autoscaling.
    scalers = [o for o in objs if o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")]
    if scalers:
        check("no replicas in the Deployment when an autoscaler owns them", "replicas" not in dep["spec"])
    else:
        check("replicas within the requests topic's partitions",
              1 <= dep["spec"].get("replicas", 1) <= args.partitions)
    topic = conf.get("kafka", {}).get("topics", {}).get("requests", "assistant.requests")
    for s in scalers:
        sp = s["spec"]
        check(f"{s['kind']} targets the Deployment", sp["scaleTargetRef"]["name"] == dep["metadata"]["name"]
              and sp["scaleTargetRef"]["kind"] == "Deployment")
        mx = sp.get("maxReplicaCount", sp.get("maxReplicas"))
        mn = sp.get("minReplicaCount", sp.get("minReplicas"))
        check(f"{s['kind']} replicas: 1 <= {mn} <= {mx} <= {args.partitions} partitions",
              1 <= mn <= mx <= args.partitions)
        if s["kind"] == "ScaledObject":
            trig = sp["triggers"][0]
            md = trig["metadata"]
            check("ScaledObject: a kafka trigger on the worker's group, requests topic and brokers",
                  trig["type"] == "kafka" and md["consumerGroup"] == group and md["topic"] == topic
                  and md["bootstrapServers"] == conf["kafka"]["brokers"] and md["allowIdleConsumers"] == "false"
                  and s["apiVersion"] == "keda.sh/v1alpha1", json.dumps(md))

    for pdb in (o for o in objs if o["kind"] == "PodDisruptionBudget"):
        check("PodDisruptionBudget selects the pods", matches(pdb["spec"]["selector"]["matchLabels"], labels))
    svc = next((o for o in objs if o["kind"] == "Service"), None)
    if svc:
        check("Service selects the pods on the ops port", matches(svc["spec"]["selector"], labels)
              and any(p["name"] == "ops" and p["targetPort"] == "ops" for p in svc["spec"]["ports"]))
    for sm in (o for o in objs if o["kind"] == "ServiceMonitor"):
        ep = sm["spec"]["endpoints"][0]
        check("ServiceMonitor selects the Service and scrapes /metrics on ops",
              svc is not None and matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
              and ep["port"] == "ops" and ep["path"] == "/metrics")
    for np_ in (o for o in objs if o["kind"] == "NetworkPolicy"):
        check_network_policy(np_, labels, conf, port)
    for pr in (o for o in objs if o["kind"] == "PrometheusRule"):
        check_rules(pr, args.binary)
    return conf, c


def check_network_policy(np_, labels, conf, ops_port):
    sp = np_["spec"]
    check("NetworkPolicy selects the pods, restricts both directions",
          matches(sp["podSelector"]["matchLabels"], labels) and set(sp["policyTypes"]) == {"Ingress", "Egress"})
    check("NetworkPolicy ingress: the ops port only",
          all([p.get("port") for p in r.get("ports", [])] in (["ops"], [ops_port]) for r in sp.get("ingress", []))
          and len(sp.get("ingress", [])) >= 1)
    rules = sp.get("egress", [])
    check("NetworkPolicy egress: every rule names its ports (no allow-all)",
          rules and all(r.get("ports") for r in rules))
    allowed = {(p["port"], p.get("protocol", "TCP")) for r in rules for p in r["ports"]}
    # What the worker connects to, but loopback (a sidecar's port: no NetworkPolicy applies).
    local = ("127.0.0.1", "localhost", "::1", "[::1]")
    need = {(int(b.strip().rsplit(":", 1)[1]), "TCP") for b in conf["kafka"]["brokers"].split(",")
            if b.strip().rsplit(":", 1)[0] not in local}
    if conf.get("redis", {}).get("host", "127.0.0.1") not in local:
        need.add((int(conf.get("redis", {}).get("port", 6379)), "TCP"))
    m = re.match(r"(https?)://(?:[^@/]*@)?(\[[^\]]*\]|[^:/]*)(?::(\d+))?", conf.get("api", {}).get("base_url",
                                                                                           "https://x"))
    if m.group(2) not in local:
        need.add((int(m.group(3) or (80 if m.group(1) == "http" else 443)), "TCP"))
    need.add((53, "UDP"))
    check("NetworkPolicy egress covers Kafka, Redis, the API and DNS", need <= allowed,
          f"missing {sorted(need - allowed)}")


def check_rules(pr, binary):
    """Each alert's metric is one the binary exports (name without _total/_count suffixes)."""
    data = open(binary, "rb").read() if binary else b""
    for g in pr["spec"]["groups"]:
        for r in g["rules"]:
            names = set(re.findall(r"\b(aw_[a-z_]+)", r["expr"]))
            base = {re.sub(r"_(total|count|sum|bucket)$", "", n) for n in names}
            missing = [n for n in base if binary and f'"{n}"'.encode() not in data and n.encode() not in data]
            check(f"alert {r['alert']} watches metrics the binary exports ({', '.join(sorted(names)) or 'up'})",
                  not missing, f"not in the binary: {missing}")


# ---- the binary ---------------------------------------------------------------------------------

def pod_env(container, tmp):
    """The container's environment as the kubelet would set it, with sample values."""
    env, secrets = {}, 0
    for e in container.get("env", []):
        if "value" in e:
            v = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(e["value"]))
            if v.startswith(SECRETS_MOUNT):  # a mounted secret file: a sample one in tmp
                path = os.path.join(tmp, v[len(SECRETS_MOUNT):].replace("/", "_"))
                with open(path, "w") as f:
                    f.write("sample-" + base64.b32encode(os.urandom(20)).decode().lower())
                v = path
            env[e["name"]] = v
        elif "fieldRef" in e.get("valueFrom", {}):
            env[e["name"]] = "assistant-worker-5d8f7c9b6-x2k4q"
        elif "secretKeyRef" in e.get("valueFrom", {}):
            secrets += 1
            env[e["name"]] = f"sample{secrets}-" + base64.b32encode(os.urandom(20)).decode().lower()
    return env


def print_config(binary, config_path, env):
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            base[k] = os.environ[k]
    p = subprocess.run([binary, "run", "--config", config_path, "--print-config"], env={**base, **env},
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def check_drift(conf, container, binary):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "config.json")
        with open(path, "w") as f:
            json.dump(conf, f)
        env = pod_env(container, tmp)
        rc, out, err = print_config(binary, path, env)
        if not check("the binary accepts the rendered config.json and environment (run --print-config)",
                     rc == 0, (err.strip().splitlines() or ["exit %d" % rc])[-1]):
            return
        printed = json.loads(out)
        known = set(key_paths(printed))
        unknown = [k for k in key_paths(conf) if k not in known]
        check("every configuration key of the chart is one --print-config prints", not unknown,
              f"unknown to the binary: {unknown}")
        if "AW_KAFKA_TRANSACTIONAL_ID" in env:
            check("the pod's transactional id reaches the worker",
                  printed["kafka"]["transactional_id"] == env["AW_KAFKA_TRANSACTIONAL_ID"])
        data = open(binary, "rb").read()
        for name in sorted(n for n in env if n.startswith("AW_") or n == "OPENAI_API_KEY"):
            rest = {k: v for k, v in env.items() if k != name}
            rc2, out2, _ = print_config(binary, path, rest)
            if (rc2, out2) != (rc, out):
                check(f"{name} is read by the binary (--print-config changes without it)", True)
            else:
                check(f"{name} is read by the binary (no trace in --print-config; named in the binary)",
                      name.encode() + b"\0" in data, "the binary does not know this variable")


def main():
    global SCENARIO
    ap = argparse.ArgumentParser()
    ap.add_argument("--render", required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--expect-kinds", required=True)
    ap.add_argument("--binary")
    ap.add_argument("--k8s-versions", default="")
    args = ap.parse_args()
    SCENARIO = args.scenario
    objs = load(args.render)
    if args.k8s_versions:
        check_schemas(objs, args.k8s_versions.split(","))
    got = check_objects(objs, args)
    if got and args.binary:
        check_drift(got[0], got[1], args.binary)
    print(f"{SCENARIO}: {RESULTS['ok']} checks passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
