#!/usr/bin/env python3
"""Checks the monitoring files against each other and against the metrics hookgate exports.

    scripts/check-monitoring.py [--promtool PATH]

- The metric catalogue is read from src/: every `metrics::counter!`, `gauge!` and
  `histogram!` call, its name and its label keys (a histogram exposes NAME_bucket with `le`,
  NAME_sum and NAME_count).
- Every PromQL expression (the alert and recording rules, the Grafana dashboards' queries,
  legends and template variables) may only name series of that catalogue (or Prometheus's own
  `up`, or a recording rule defined here), only with their labels (plus `job` and
  `instance`, which Prometheus adds), and a literal label value it matches on (`outcome="dead"`)
  must be a string literal somewhere in src/.
- Prometheus: `promtool check config` (which checks the rule files it loads too),
  `promtool check rules` on the expected-replicas template and on every dashboard query (as a
  recording rule, so that PromQL syntax is checked), `promtool test rules` on
  monitoring/prometheus/*.test.yml. The scrape job's DNS name and port must be the compose
  service and the port the replicas bind.
- Grafana: each dashboard is validated against monitoring/grafana/schema/dashboard.schema.json
  (JSON schemas made from Grafana's @grafana/schema types: unknown or misspelt fields fail),
  panel options against their panel type's schema; every panel has a datasource, every query
  an `expr` and a unique refId, panels stay in the 24-column grid without overlapping, every
  `$variable` is defined; the provisioning files point at the datasource and the folder
  docker-compose.yml mounts.
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("check-monitoring: PyYAML is needed (pip install pyyaml, or apt-get install python3-yaml)")
try:
    import jsonschema
except ImportError:  # pragma: no cover
    sys.exit("check-monitoring: jsonschema is needed (pip install jsonschema, or apt-get install python3-jsonschema)")

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MON = os.path.join(ROOT, "monitoring")
PROM_CONFIG = os.path.join(MON, "prometheus", "prometheus.yml")
EXPECTED_TEMPLATE = os.path.join(MON, "prometheus", "expected-replicas.yml.in")
PLACEHOLDER = "@HOOKGATE_REPLICAS@"
SCHEMA = os.path.join(MON, "grafana", "schema", "dashboard.schema.json")
DASHBOARDS = os.path.join(MON, "grafana", "dashboards")
PROVISIONING = os.path.join(MON, "grafana", "provisioning")
COMPOSE = os.path.join(ROOT, "docker-compose.yml")

# Series named in the rules that src/ describes but never records, so that they never exist.
# Each is a known defect, reported on every run; anything else missing fails.
KNOWN_MISSING = {}

# Names src/ describes (metrics::describe_*!) but never records, filled by main().
DESCRIBED_ONLY = set()

# Series Prometheus makes itself for each target.
BUILTIN = {
    name: {"type": "gauge", "labels": set()}
    for name in ("up", "scrape_duration_seconds", "scrape_samples_scraped",
                 "scrape_samples_post_metric_relabeling", "scrape_series_added")
}
TARGET_LABELS = {"job", "instance"}

errors = []
warnings = []


def error(where, msg):
    errors.append(f"{where}: {msg}")


def rel(path):
    return os.path.relpath(path, ROOT)


# ---- The metric catalogue, from src/ ----------------------------------------------------------

MACRO = re.compile(r"\bmetrics::(counter|gauge|histogram)!\s*\(")
DESCRIBE = re.compile(r"\bmetrics::describe_(counter|gauge|histogram)!\s*\(\s*\"([A-Za-z_:][A-Za-z0-9_:]*)\"")


def closing(text, start):
    """Index of the parenthesis closing the one just before `start`, skipping strings."""
    depth, i = 1, start
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError("unbalanced macro call")


def strip_comments(text):
    return re.sub(r"//[^\n]*", lambda m: " " * len(m.group(0)), text)


def catalogue():
    metrics, described, literals = {}, set(), set()
    for path in sorted(glob.glob(os.path.join(ROOT, "src", "**", "*.rs"), recursive=True)):
        text = strip_comments(open(path, encoding="utf-8").read())
        literals.update(re.findall(r'"([A-Za-z0-9_.\-]+)"', text))
        described.update(name for _, name in DESCRIBE.findall(text))
        for m in MACRO.finditer(text):
            kind = m.group(1)
            args = text[m.end():closing(text, m.end())]
            line = text.count("\n", 0, m.start()) + 1
            where = f"{rel(path)}:{line}"
            name = re.match(r'\s*"([A-Za-z_:][A-Za-z0-9_:]*)"\s*(,|$)', args)
            if not name:
                error(where, f"a metrics::{kind}! call whose name is not a string literal: the checker cannot follow it")
                continue
            rest = args[name.end():]
            labels = set(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"\s*=>', rest))
            # A label slice passed by name (`&labels`): its `let` in the same file.
            for var in re.findall(r"&\s*([a-z_][a-z0-9_]*)\s*$", rest.strip()):
                let = list(re.finditer(r"let\s+" + var + r"\s*=\s*\[(.*?)\];", text[:m.start()], re.S))
                if not let:
                    error(where, f"labels `{var}` of {name.group(1)}: no `let {var} = [...]` before it")
                    continue
                labels.update(re.findall(r'\(\s*"([A-Za-z_][A-Za-z0-9_]*)"\s*,', let[-1].group(1)))
            entry = metrics.setdefault(name.group(1), {"type": kind, "labels": set(), "where": where})
            if entry["type"] != kind:
                error(where, f"{name.group(1)} is a {kind} here and a {entry['type']} at {entry['where']}")
            entry["labels"] |= labels
    series = {}
    for name, m in metrics.items():
        if m["type"] == "histogram":
            series[name + "_bucket"] = {"type": "counter", "labels": m["labels"] | {"le"}}
            series[name + "_sum"] = {"type": "counter", "labels": set(m["labels"])}
            series[name + "_count"] = {"type": "counter", "labels": set(m["labels"])}
        else:
            series[name] = {"type": m["type"], "labels": set(m["labels"])}
    if len(series) < 10:
        error("src/", f"only {len(series)} metrics found: has the way src/ records them changed?")
    return series, described - set(metrics), literals


# ---- PromQL ------------------------------------------------------------------------------------

TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<dur>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*\b)
  | (?P<num>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],@:])
""", re.X)
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
WORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}


def tokens(expr):
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read {expr[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group(0)))
    return out


def unquote(s):
    return s[1:-1]


def analyse(expr):
    """(selectors, grouping labels): selectors are (metric, [(label, op, value)])."""
    toks = tokens(expr)
    selectors, grouping = [], set()

    def matchers(i):  # toks[i] is '{'; returns (matchers, index after '}')
        found = []
        i += 1
        while toks[i][1] != "}":
            if toks[i][1] == ",":
                i += 1
                continue
            label, op, value = toks[i][1], toks[i + 1][1], toks[i + 2]
            if value[0] != "str":
                raise ValueError(f"matcher {label}{op} needs a string")
            found.append((label, op, unquote(value[1])))
            i += 3
        return found, i + 1

    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if text == "[":
            while toks[i][1] != "]":
                i += 1
            i += 1
        elif kind == "ident" and text in GROUPING:
            i += 1
            if nxt == "(":
                i += 1
                while toks[i][1] != ")":
                    if toks[i][0] == "ident":
                        grouping.add(toks[i][1])
                    i += 1
                i += 1
        elif kind == "ident" and (text.lower() in WORDS or text in AGGREGATIONS or nxt == "("):
            i += 1  # an operator, or a function or aggregation
        elif kind == "ident":
            found = []
            i += 1
            if nxt == "{":
                found, i = matchers(i)
            selectors.append((text, found))
        elif text == "{":
            found, i = matchers(i)
            name = [v for label, op, v in found if label == "__name__" and op == "="]
            selectors.append((name[0] if name else None, found))
        else:
            i += 1
    return selectors, grouping


def check_expr(where, expr, series, literals, recorded, jobs):
    """Checks an expression's names and labels; returns the labels its series can carry (None
    when it names an unknown series: the checks on labels would only repeat that)."""
    try:
        selectors, grouping = analyse(expr)
    except (ValueError, IndexError) as e:
        error(where, f"cannot read the expression ({e}): {expr!r}")
        return set()
    if not selectors:
        return set(grouping)
    available = set(TARGET_LABELS)
    unknown = False
    for metric, found in selectors:
        if metric is None:
            error(where, f"a selector without a metric name: {expr!r}")
            continue
        if metric in KNOWN_MISSING and metric not in series:
            warnings.append(f"{where}: {metric}: {KNOWN_MISSING[metric]}")
            continue
        if metric in recorded:
            labels = set(recorded[metric])
        elif metric in series:
            labels = series[metric]["labels"] | TARGET_LABELS
        elif metric in BUILTIN:
            labels = set(TARGET_LABELS)
        else:
            close = [n for n in series if n.split("_")[1:2] == metric.split("_")[1:2]]
            hint = f" (hookgate has {', '.join(sorted(close))})" if close else ""
            if metric in DESCRIBED_ONLY:
                hint = " (src/ describes it, but nothing records it: it never appears)"
            error(where, f"{metric} is not a series hookgate exports{hint}")
            unknown = True
            continue
        available |= labels
        for label, op, value in found:
            if label == "__name__":
                continue
            if label not in labels:
                error(where, f"{metric} has no label {label!r} (it has {', '.join(sorted(labels)) or 'none'})")
            elif label == "job" and op in ("=", "=~") and "$" not in value:
                for v in value.split("|"):
                    if v not in jobs:
                        error(where, f"job {v!r} is not a scrape job of {rel(PROM_CONFIG)} ({', '.join(sorted(jobs))})")
            elif (label not in TARGET_LABELS | {"le"} and metric.startswith("hookgate_")
                  and op in ("=", "=~") and "$" not in value):
                for v in value.split("|"):
                    if re.fullmatch(r"[A-Za-z0-9_.\-]+", v) and v not in literals:
                        error(where, f'{metric}{{{label}{op}"{value}"}}: {v!r} is no string in src/, so never a value of {label}')
    if unknown:
        return None
    for label in grouping:
        if label not in available:
            error(where, f"grouping by {label!r}, which none of its series has ({', '.join(sorted(available))})")
    return available


# ---- Rules -------------------------------------------------------------------------------------

def load_rules(path, text=None):
    doc = yaml.safe_load(text if text is not None else open(path))
    rules = []
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            rules.append(rule)
    return rules


def check_rules(series, literals, jobs):
    files = [os.path.join(MON, "alerts.yml")] + sorted(glob.glob(os.path.join(MON, "prometheus", "*.yml")))
    files = [f for f in files if not f.endswith(".test.yml") and f != PROM_CONFIG]
    docs = [(rel(f), load_rules(f)) for f in files]
    template = open(EXPECTED_TEMPLATE).read()
    if PLACEHOLDER not in template:
        error(rel(EXPECTED_TEMPLATE), f"no {PLACEHOLDER} to put HOOKGATE_REPLICAS in")
    docs.append((rel(EXPECTED_TEMPLATE), load_rules(None, template.replace(PLACEHOLDER, "3"))))
    recorded = {}
    for _, rules in docs:
        for rule in rules:
            if "record" in rule:
                recorded[rule["record"]] = set(rule.get("labels", {}))
    count = 0
    for name, rules in docs:
        for rule in rules:
            what = rule.get("alert") or rule.get("record")
            labels = check_expr(f"{name} {what}", rule["expr"], series, literals, recorded, jobs)
            if labels is None:
                continue
            if "record" in rule:
                recorded[rule["record"]] |= labels
            for field in ("summary", "description"):
                for label in re.findall(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)", rule.get("annotations", {}).get(field, "")):
                    if label not in labels | set(rule.get("labels", {})):
                        error(f"{name} {what}", f"the {field} names $labels.{label}, which its expression does not keep")
            count += 1
    return recorded, count


# ---- Prometheus config and compose -------------------------------------------------------------

def compose_env():
    compose = yaml.safe_load(open(COMPOSE))
    env = compose.get("x-hookgate-env", {})
    return compose, env


def check_prometheus_config():
    config = yaml.safe_load(open(PROM_CONFIG))
    jobs = {job["job_name"]: job for job in config.get("scrape_configs", [])}
    compose, env = compose_env()
    services = compose.get("services", {})
    job = jobs.get("hookgate")
    if not job:
        error(rel(PROM_CONFIG), "no scrape job `hookgate` (the replica rules and the dashboard use it)")
        return set(jobs)
    port = str(env.get("HOOKGATE_BIND", "")).rsplit(":", 1)[-1]
    for sd in job.get("dns_sd_configs", []) or [None]:
        if sd is None:
            error(rel(PROM_CONFIG), "the hookgate job has no dns_sd_configs: it would not see every replica")
            continue
        for name in sd.get("names", []):
            if name not in services:
                error(rel(PROM_CONFIG), f"dns_sd_configs name {name!r} is no service of docker-compose.yml")
        if str(sd.get("port")) != port:
            error(rel(PROM_CONFIG), f"dns_sd_configs port {sd.get('port')} is not the replicas' port ({env.get('HOOKGATE_BIND')})")
        if sd.get("type", "A") != "A":
            error(rel(PROM_CONFIG), "Docker's DNS answers A records for a service, not SRV")
    for name in ("prometheus", "grafana"):
        service = services.get(name)
        if not service:
            error("docker-compose.yml", f"no service {name}")
        elif service.get("profiles") != ["monitoring"]:
            error("docker-compose.yml", f"{name} is not in the `monitoring` profile alone")
    return set(jobs)


def run(cmd, where):
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        out = (result.stdout + result.stderr).strip()
        error(where, f"`{' '.join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd)}` failed:\n{out}")
    return result


def promtool_checks(promtool, dashboard_exprs):
    run([promtool, "check", "config", PROM_CONFIG], rel(PROM_CONFIG))
    with tempfile.TemporaryDirectory() as tmp:
        expected = os.path.join(tmp, "expected-replicas.yml")
        with open(expected, "w") as f:
            f.write(open(EXPECTED_TEMPLATE).read().replace(PLACEHOLDER, "3"))
        run([promtool, "check", "rules", expected], rel(EXPECTED_TEMPLATE))
        # The dashboards' queries as recording rules: promtool parses each.
        queries = os.path.join(tmp, "dashboard-queries.yml")
        rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(dashboard_exprs)]
        with open(queries, "w") as f:
            yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, f)
        result = subprocess.run([promtool, "check", "rules", queries], capture_output=True, text=True)
        if result.returncode != 0:
            # Name the queries promtool refuses: one at a time (only on failure).
            for where, expr in dashboard_exprs:
                one = os.path.join(tmp, "one.yml")
                with open(one, "w") as f:
                    yaml.safe_dump({"groups": [{"name": "q", "rules": [{"record": "q", "expr": expr}]}]}, f)
                r = subprocess.run([promtool, "check", "rules", one], capture_output=True, text=True)
                if r.returncode != 0:
                    error(where, f"promtool refuses the query {expr!r}:\n{(r.stdout + r.stderr).strip()}")
    tests = sorted(glob.glob(os.path.join(MON, "prometheus", "*.test.yml")))
    if tests:
        run([promtool, "test", "rules", *tests], ", ".join(rel(t) for t in tests))
    return len(tests)


# ---- Grafana -----------------------------------------------------------------------------------

GRAFANA_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}|([A-Za-z_][A-Za-z0-9_]*))")
GLOBAL_INTERVALS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def schema_errors(schema, definitions, instance):
    root = dict(schema)
    root.setdefault("definitions", definitions)
    validator = jsonschema.Draft7Validator(root)
    return sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))


def describe(err):
    path = "/".join(str(p) for p in err.absolute_path) or "(top)"
    if err.context:
        best = jsonschema.exceptions.best_match(err.context)
        return f"{path}: {best.message}"
    return f"{path}: {err.message}"


def to_promql(where, expr, variables):
    """The query as Prometheus sees it, with Grafana's variables given sample values."""
    def sub(m):
        name = m.group(1) or m.group(2)
        if name in GLOBAL_INTERVALS:
            return GLOBAL_INTERVALS[name]
        if name in variables:
            return ".*"
        error(where, f"${name} is not a variable of the dashboard")
        return ".*"
    return GRAFANA_VAR.sub(sub, expr)


def check_dashboard(path, bundle, series, literals, recorded, jobs, datasource_uid):
    name = rel(path)
    dash = json.load(open(path))
    schema = bundle["dashboard"]
    defs = schema["definitions"]
    # The dashboard without its panels, then each panel on its own (clearer messages).
    top = dict(schema["definitions"]["Dashboard"])
    top_props = dict(top["properties"])
    top_props["panels"] = {"type": "array"}
    top["properties"] = top_props
    for err in schema_errors(top, defs, dash):
        error(name, describe(err))
    variables = {}
    for var in dash.get("templating", {}).get("list", []):
        variables[var["name"]] = var
    ds_vars = [v for v in variables.values() if v["type"] == "datasource"]
    exprs = []

    def datasource_ok(where, ds):
        if not isinstance(ds, dict) or ds.get("type") != "prometheus":
            error(where, f"datasource {ds!r} is not a Prometheus datasource reference")
            return
        uid = ds.get("uid", "")
        if uid not in (datasource_uid,) and uid not in {f"${{{v['name']}}}" for v in ds_vars} | {f"${v['name']}" for v in ds_vars}:
            error(where, f"datasource uid {uid!r} is neither the provisioned {datasource_uid!r} nor a datasource variable")

    for var in variables.values():
        where = f"{name} variable {var['name']}"
        if var["type"] == "query":
            datasource_ok(where, var.get("datasource"))
            query = var.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", query or "")
            if not m:
                error(where, f"query {query!r}: only label_values(SELECTOR, LABEL) is checked here")
                continue
            selector = to_promql(where, m.group(1), variables)
            labels = check_expr(where, selector, series, literals, recorded, jobs)
            if labels is not None and m.group(2) not in labels:
                error(where, f"label_values of {m.group(2)!r}, which {selector} has not")

    panels = []
    for panel in dash.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []) if panel.get("type") == "row" else [])
    ids, cells = set(), {}
    for panel in panels:
        title = panel.get("title", "?")
        where = f"{name} panel {panel.get('id')} {title!r}"
        kind = panel.get("type")
        definition = "RowPanel" if kind == "row" else "Panel"
        for err in schema_errors({"$ref": f"#/definitions/{definition}"}, defs, panel):
            error(where, describe(err))
        if panel.get("id") in ids:
            error(where, "duplicate panel id")
        ids.add(panel.get("id"))
        pos = panel.get("gridPos", {})
        x, y, w, h = (pos.get(k, 0) for k in ("x", "y", "w", "h"))
        if x < 0 or w <= 0 or h <= 0 or x + w > 24:
            error(where, f"gridPos {pos} is outside the 24-column grid")
        for cx in range(x, x + w):
            for cy in range(y, y + h):
                if (cx, cy) in cells:
                    error(where, f"overlaps panel {cells[(cx, cy)]} at column {cx}, row {cy}")
                    break
                cells[(cx, cy)] = panel.get("id")
            else:
                continue
            break
        if kind == "row":
            continue
        plugin = bundle["panels"].get(kind)
        if plugin is None:
            error(where, f"panel type {kind!r} has no schema in {rel(SCHEMA)} (see regenerate.sh)")
        else:
            for err in schema_errors(plugin["options"], plugin["options"].get("definitions", {}), panel.get("options", {})):
                error(where, "options/" + describe(err))
            custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
            if custom is not None and "fieldConfig.defaults.custom" in plugin:
                s = plugin["fieldConfig.defaults.custom"]
                for err in schema_errors(s, s.get("definitions", {}), custom):
                    error(where, "fieldConfig/defaults/custom/" + describe(err))
        datasource_ok(where, panel.get("datasource"))
        targets = panel.get("targets") or []
        if not targets:
            error(where, "no queries")
        refs = set()
        for target in targets:
            twhere = f"{where} query {target.get('refId')}"
            if target.get("refId") in refs or not target.get("refId"):
                error(twhere, "missing or repeated refId")
            refs.add(target.get("refId"))
            datasource_ok(twhere, target.get("datasource"))
            expr = target.get("expr")
            if not expr:
                error(twhere, "no expr")
                continue
            promql = to_promql(twhere, expr, variables)
            labels = check_expr(twhere, promql, series, literals, recorded, jobs)
            exprs.append((twhere, promql))
            for label in [] if labels is None else re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", target.get("legendFormat", "")):
                if label not in labels:
                    error(twhere, f"legend {{{{{label}}}}}: no series of the query has that label")
        for text in (panel.get("title", ""), panel.get("description", "")):
            for m in GRAFANA_VAR.finditer(text):
                if (m.group(1) or m.group(2)) not in variables:
                    error(where, f"${m.group(1) or m.group(2)} is not a variable of the dashboard")
    return exprs, sum(1 for p in panels if p.get("type") != "row")


def check_provisioning():
    compose, _ = compose_env()
    grafana = compose.get("services", {}).get("grafana", {})
    env = grafana.get("environment", {}) or {}
    # Where compose mounts monitoring/grafana, and where Grafana looks for provisioning.
    mounts = {}
    for volume in grafana.get("volumes", []):
        if isinstance(volume, str) and volume.startswith("./"):
            host, container = volume.split(":")[:2]
            mounts[container] = os.path.normpath(os.path.join(ROOT, host))

    def host_path(container_path):
        for container, host in mounts.items():
            if container_path == container or container_path.startswith(container + "/"):
                return os.path.normpath(host + container_path[len(container):])
        return None

    provisioning = host_path(env.get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning"))
    if provisioning != PROVISIONING:
        error("docker-compose.yml grafana", f"Grafana's provisioning folder is not {rel(PROVISIONING)} (mounts: {mounts})")
    datasources = []
    for path in glob.glob(os.path.join(PROVISIONING, "datasources", "*.yml")):
        datasources += yaml.safe_load(open(path)).get("datasources", [])
    prom = [d for d in datasources if d.get("type") == "prometheus"]
    if len(prom) != 1:
        error(rel(PROVISIONING), f"{len(prom)} Prometheus datasources provisioned, not 1")
        return None
    if prom[0].get("url") != "http://prometheus:9090":
        error(rel(PROVISIONING), f"the datasource's url {prom[0].get('url')} is not the compose service prometheus:9090")
    for path in glob.glob(os.path.join(PROVISIONING, "dashboards", "*.yml")):
        for provider in yaml.safe_load(open(path)).get("providers", []):
            folder = host_path(provider.get("options", {}).get("path", ""))
            if folder != DASHBOARDS:
                error(rel(path), f"provider {provider.get('name')!r} reads {provider.get('options', {}).get('path')}, which is not {rel(DASHBOARDS)} in the container")
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home and not (host_path(home) and os.path.isfile(host_path(home))):
        error("docker-compose.yml grafana", f"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH {home} is no mounted file")
    return prom[0].get("uid")


# ---- Main --------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--promtool", help="promtool to run (default: on PATH, or target/tools/promtool)")
    parser.add_argument("--no-promtool", action="store_true", help="skip the promtool checks")
    args = parser.parse_args()

    series, described_only, literals = catalogue()
    DESCRIBED_ONLY.update(described_only)
    jobs = check_prometheus_config()
    recorded, rule_count = check_rules(series, literals, jobs)
    uid = check_provisioning()
    bundle = json.load(open(SCHEMA))
    exprs, panel_count, dashboards = [], 0, sorted(glob.glob(os.path.join(DASHBOARDS, "*.json")))
    if not dashboards:
        error(rel(DASHBOARDS), "no dashboard")
    for path in dashboards:
        e, n = check_dashboard(path, bundle, series, literals, recorded, jobs, uid)
        exprs += e
        panel_count += n

    tests = 0
    if not args.no_promtool:
        promtool = args.promtool or shutil.which("promtool") or os.path.join(ROOT, "target", "tools", "promtool")
        if not os.access(promtool, os.X_OK):
            error("promtool", f"{promtool} not found (scripts/check-deploy.sh fetches it; or pass --no-promtool)")
        else:
            tests = promtool_checks(promtool, exprs)

    for w in sorted(set(warnings)):
        print(f"check-monitoring: warning: {w}")
    if errors:
        for e in errors:
            print(f"check-monitoring: {e}", file=sys.stderr)
        print(f"check-monitoring: {len(errors)} error(s)", file=sys.stderr)
        return 1
    print(f"check-monitoring: {len(series)} series from src/; {rule_count} rules, {len(dashboards)} dashboard(s) "
          f"with {panel_count} panels and {len(exprs)} queries use only those, with their labels; "
          f"dashboards match Grafana {bundle['grafana_schema_version']}'s schema"
          + ("" if args.no_promtool else f"; promtool check config/rules and {tests} rule test file(s) pass"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
