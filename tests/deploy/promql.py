"""The series selectors of a PromQL expression (metric name and label matchers), enough to
check which metrics rules and dashboards name. Parsing itself is promtool's job."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Grafana's built-in interval variables and what stands in for them when checking.
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
KEYWORDS = frozenset(
    [
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
    ]
)
_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SELECTOR = re.compile(rf"(?<![\w.])({_NAME})?\s*\{{((?:{_STRING}|[^}}\"'])*)\}}")
_MATCHER = re.compile(rf"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*({_STRING})\s*,?")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_BARE = re.compile(rf"(?<![\w.$]){_NAME}")


@dataclass(frozen=True)
class Selector:
    metric: str | None  # None: a selector by labels alone ({__name__=...})
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value)


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's interval variables by durations and ``$var`` by ``.*`` (they only
    appear inside regex matchers in these dashboards)."""
    for var, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(var, value)
    return re.sub(r"\$\{?[a-zA-Z_]\w*\}?", ".*", expr)


def selectors(expr: str) -> list[Selector]:
    out: list[Selector] = []

    def braced(m: re.Match[str]) -> str:
        body = m.group(2)
        matchers = []
        pos = 0
        while pos < len(body.strip()):
            mm = _MATCHER.match(body, pos)
            if mm is None:
                raise ValueError(f"cannot read label matchers {body!r} in {expr!r}")
            matchers.append((mm.group(1), mm.group(2), mm.group(3)[1:-1]))
            pos = mm.end()
        out.append(Selector(m.group(1), tuple(matchers)))
        return " "

    rest = _SELECTOR.sub(braced, expr)
    rest = re.sub(_STRING, " ", rest)
    rest = _GROUPING.sub(" ", rest)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)
    for m in _BARE.finditer(rest):
        name = m.group(0)
        if name in KEYWORDS or re.match(r"\s*\(", rest[m.end() :]):
            continue  # a keyword or a function call
        out.append(Selector(name, ()))
    return out
