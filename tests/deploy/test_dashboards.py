"""Grafana dashboards (deploy/grafana/): well-formed, provisioned, and every query parses
(promtool, through a throwaway rules file) and names only series and labels that a live
router exports. Needs promtool (Debian package ``prometheus``) for the parse check."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from .conftest import DEPLOY, TARGET_LABELS
from .promql import grafana_to_promql, selectors

GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PROMTOOL = shutil.which("promtool")
#: Label values the router emits from a closed set, checked against the live /metrics.
CLOSED_LABELS = ("state", "route", "method")


def queries(dash: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((f"{dash['uid']}: panel {p['title']!r} {t['refId']}", t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"]["query"])
            assert m, f"{dash['uid']}: variable {v['name']}: not label_values(...)"
            out.append((f"{dash['uid']}: variable {v['name']}", m.group(1)))
    return out


def all_queries() -> list[tuple[str, str]]:
    return [q for path in DASHBOARDS for q in queries(json.loads(path.read_text()))]


def test_the_five_dashboards_are_provisioned():
    names = {p.stem for p in DASHBOARDS}
    assert names == {"fleet", "queue", "latency", "gpu-health", "quotas"}
    dashes = [json.loads(p.read_text()) for p in DASHBOARDS]
    assert len({d["uid"] for d in dashes}) == len(dashes)
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "gpu-router.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    for d in dashes:
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), d["uid"]
        for p in d["panels"]:
            assert p["datasource"]["uid"] == source["uid"], (d["uid"], p["title"])
            assert p["targets"], (d["uid"], p["title"])
    compose = yaml.safe_load((DEPLOY / "docker-compose.prod.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: scripts/install-system-deps.sh")
def test_every_query_parses(tmp_path):
    qs = all_queries()
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
                    for i, (_, expr) in enumerate(qs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    p = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"SUCCESS: {len(qs)} rules found" in p.stdout


def test_queries_name_only_what_the_router_exports(exported):
    problems = []
    for where, expr in all_queries():
        sels = selectors(grafana_to_promql(expr))
        if not sels:
            problems.append(f"{where}: no series selector in {expr!r}")
        for s in sels:
            if s.metric not in exported.labels:
                problems.append(f"{where}: {s.metric} is not on the router's /metrics")
                continue
            known = exported.labels[s.metric]
            for label, op, value in s.matchers:
                if known is not None and label not in known | TARGET_LABELS:
                    problems.append(f"{where}: {s.metric} has no label {label!r}")
                if (
                    label in CLOSED_LABELS
                    and op == "="
                    and value not in exported.values.get(label, ())
                ):
                    problems.append(f"{where}: {label}={value!r} never appears")
    assert not problems, "\n".join(problems)
