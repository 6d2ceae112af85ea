#!/usr/bin/env bash
# Checks the monitoring files offline with Prometheus' own tool (promtool, Debian's `prometheus`
# package; installed with apt-get when missing):
#   rules       `promtool check rules` and `promtool test rules` of deploy/prometheus/
#   coverage    every alert has a test case where it fires and one where it stays quiet
#   contract    every alert has a severity (critical, warning, info), a summary, a description and
#               a runbook_url "README.md#<alert in lower case>" naming a README "Runbook" section
#               with what it means / what to check / what to do; no runbook section without alert
#   metrics     every rollcall_* metric the rules and the dashboard use is in README's metrics
#               table (or announced below), so a typo cannot hide behind an empty panel
#   dashboard   deploy/grafana/rollcall.json: a `datasource` variable every panel and query uses,
#               unique panel ids, gridPos inside 24 columns without overlaps, and EVERY query
#               (panels and variables) parses: each becomes a recording rule in a generated file
#               for `promtool check rules` (Grafana's $variables replaced by sample values first)
#   k8s         k8s/overlays/monitoring/prometheusrule.yaml is what scripts/gen-prometheusrule.sh
#               generates from the rules now
# The real scrape (a Prometheus process with these rules and three nodes) is tests/it/prometheus.rs.
# Prints one line per check; exits 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

RULES=deploy/prometheus/rollcall.rules.yml
RULE_TESTS=deploy/prometheus/rollcall.rules.test.yml
DASHBOARD=deploy/grafana/rollcall.json

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

command -v promtool >/dev/null || apt_install prometheus
# A Python that can read YAML: the one on PATH, else Debian's with python3-yaml.
PYTHON=""
for candidate in python3 /usr/bin/python3; do
  if "$candidate" -c 'import yaml' 2>/dev/null; then
    PYTHON="$candidate"
    break
  fi
done
if [ -z "$PYTHON" ]; then
  apt_install python3-yaml
  PYTHON=/usr/bin/python3
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

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

# py CHECK: runs one of the Python checks below (they share the loaders).
py() {
  "$PYTHON" - "$1" "$RULES" "$RULE_TESTS" "$DASHBOARD" "$WORK" <<'EOF'
import json, re, sys, yaml

check, rules_file, tests_file, dashboard_file, work = sys.argv[1:]
problems = []
alerts = [r for g in yaml.safe_load(open(rules_file))["groups"] for r in g["rules"] if "alert" in r]
names = [a["alert"] for a in alerts]

# Grafana's variables and the sample values that stand in for them when a query is parsed.
GRAFANA_VARIABLES = {"job": "rollcall", "instance": ".*", "__rate_interval": "5m", "__interval": "1m",
                     "__range": "1h"}

def readme_section(title):
    text = open("README.md").read()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    return m.group(1) if m else None

def dashboard_panels(panels):
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))

def dashboard_queries(dashboard):
    """(where, PromQL) of every panel target and every query variable."""
    for panel in dashboard_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            yield f"panel {panel.get('id')} {panel.get('title')!r} query {target.get('refId')}", target.get("expr", "")
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            query = query.get("query", "") if isinstance(query, dict) else query
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip())
            yield f"variable {var['name']}", m.group(1) if m else query

def substitute(expr):
    def value(m):
        name = m.group(1) or m.group(2)
        if name not in GRAFANA_VARIABLES:
            problems.append(f"unknown Grafana variable ${name} in {expr}")
        return GRAFANA_VARIABLES.get(name, "")
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)

if check == "coverage":
    fires, quiet = set(), set()
    for group in yaml.safe_load(open(tests_file))["tests"]:
        for case in group.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    for name in names:
        if name not in fires:
            problems.append(f"{name}: no test case where it fires")
        if name not in quiet:
            problems.append(f"{name}: no test case where it must not fire")
    for name in (fires | quiet) - set(names):
        problems.append(f"test cases for {name}, which is no alert")

elif check == "contract":
    runbook = readme_section("Runbook")
    if runbook is None:
        problems.append('README.md has no "## Runbook" section')
        runbook = ""
    sections = dict(re.findall(r"^### (\S+)\n(.*?)(?=^### |\Z)", runbook, re.M | re.S))
    for alert in alerts:
        name = alert["alert"]
        if alert.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            problems.append(f"{name}: severity label must be critical, warning or info")
        notes = alert.get("annotations", {})
        if sorted(notes) != ["description", "runbook_url", "summary"]:
            problems.append(f"{name}: annotations must be summary, description, runbook_url; has {sorted(notes)}")
        if notes.get("runbook_url") != f"README.md#{name.lower()}":
            problems.append(f"{name}: runbook_url must be README.md#{name.lower()}")
        section = sections.get(name)
        if section is None:
            problems.append(f"{name}: README's Runbook has no '### {name}' section")
            continue
        for part in ("What it means", "What to check", "What to do"):
            if f"**{part}" not in section:
                problems.append(f"{name}: runbook section lacks **{part}**")
    for name in sections:
        if name not in names:
            problems.append(f"README's Runbook has a section '### {name}' for no alert")

elif check == "metrics":
    table = readme_section("Observe it") or ""
    documented = set(re.findall(r"`(rollcall_\w+)", table))
    dashboard = json.load(open(dashboard_file))
    exprs = [r["expr"] for g in yaml.safe_load(open(rules_file))["groups"] for r in g["rules"]]
    exprs += [expr for _, expr in dashboard_queries(dashboard)]
    for expr in exprs:
        for metric in sorted(set(re.findall(r"\b(rollcall_\w+)", expr))):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            if metric not in documented and base not in documented:
                problems.append(f"{metric} is in no README metrics table row (nor announced): {expr.strip()}")

elif check == "dashboard":
    dashboard = json.load(open(dashboard_file))
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    source = variables.get("datasource", {})
    if source.get("type") != "datasource" or source.get("query") != "prometheus":
        problems.append("templating needs a variable `datasource` of type datasource, query prometheus")
    if not 36 <= dashboard.get("schemaVersion", 0) <= 41:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')}: expected 36..41 (Grafana 9 to 12)")
    for key in ("title", "uid"):
        if not dashboard.get(key):
            problems.append(f"dashboard has no {key}")
    expected_source = {"type": "prometheus", "uid": "${datasource}"}
    for var in variables.values():
        if var.get("type") == "query" and var.get("datasource") != expected_source:
            problems.append(f"variable {var.get('name')}: datasource must be {expected_source}")
    ids, cells = set(), {}
    for panel in dashboard_panels(dashboard.get("panels", [])):
        pid, title = panel.get("id"), panel.get("title")
        if not isinstance(pid, int) or pid in ids:
            problems.append(f"panel {title!r}: id {pid} missing or not unique")
        ids.add(pid)
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in "hwxy") or grid["x"] + grid["w"] > 24:
            problems.append(f"panel {title!r}: gridPos {grid} must have integer h, w, x, y within 24 columns")
            continue
        overlapped = set()
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    overlapped.add(cells[(x, y)])
                cells[(x, y)] = title
        problems += [f"panel {title!r} overlaps panel {other!r}" for other in sorted(overlapped)]
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        if panel.get("datasource") != expected_source or not targets:
            problems.append(f"panel {title!r}: needs datasource {expected_source} and queries")
        ref_ids = [t.get("refId") for t in targets]
        if len(set(ref_ids)) != len(ref_ids):
            problems.append(f"panel {title!r}: refIds {ref_ids} not unique")
        for target in targets:
            if target.get("datasource") != expected_source or not target.get("expr", "").strip():
                problems.append(f"panel {title!r} query {target.get('refId')}: needs datasource and expr")
    rules = [{"record": f"dashboard:query:{n}", "expr": substitute(expr)}
             for n, (_, expr) in enumerate(dashboard_queries(dashboard))]
    with open(f"{work}/dashboard.rules.yml", "w") as out:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, out, sort_keys=False)
    with open(f"{work}/dashboard.queries.txt", "w") as out:
        for n, (where, expr) in enumerate(dashboard_queries(dashboard)):
            out.write(f"dashboard:query:{n} = {where}: {expr}\n")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
}

# Every dashboard query parses: promtool checks the generated file of recording rules.
dashboard_queries_parse() {
  local status=0
  py dashboard || status=1
  promtool check rules "$WORK/dashboard.rules.yml" || {
    echo "which query is which:"
    cat "$WORK/dashboard.queries.txt"
    status=1
  }
  return "$status"
}

prometheusrule_current() {
  scripts/gen-prometheusrule.sh --stdout >"$WORK/prometheusrule.yaml" || return 1
  diff -u k8s/overlays/monitoring/prometheusrule.yaml "$WORK/prometheusrule.yaml" || {
    echo "stale: run scripts/gen-prometheusrule.sh and commit k8s/overlays/monitoring/prometheusrule.yaml"
    return 1
  }
}

check "promtool check rules $RULES" promtool check rules "$RULES"
check "promtool test rules $RULE_TESTS" promtool test rules "$RULE_TESTS"
check "every alert fires in a test and stays quiet in another" py coverage
check "every alert: severity, summary, description, runbook section in README" py contract
check "every metric in the rules and dashboard is documented" py metrics
check "dashboard structure, and every query parses (promtool)" dashboard_queries_parse
check "k8s/overlays/monitoring/prometheusrule.yaml is generated from the rules" prometheusrule_current

if [ "$failed" -gt 0 ]; then
  echo "check-observability: $failed of $checks checks FAILED"
  exit 1
fi
echo "check-observability: all $checks checks passed"
