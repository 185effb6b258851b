"""The API reference page served at /docs: one self-contained HTML page rendered from the
OpenAPI document (:mod:`.openapi`) when the app is built. Every operation with its
parameters, body (fields and an example) and answers (an example envelope for each
status); the schemas after. The stylesheet is a packaged asset inlined into the page;
there is no script and nothing is fetched from elsewhere.
"""

from __future__ import annotations

import json
from html import escape
from importlib.resources import files
from typing import Any

METHODS = ("get", "post", "put", "delete")
ERROR_CODES = {
    400: "bad_json",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "no_capacity",
}
_STRINGS = {
    "request_id": "req-123",
    "user_id": "alice",
    "model_id": "llama-7b",
    "gpu_id": "gpu-0",
    "device_id": "gpu-0",
    "assigned_gpu": "gpu-0",
    "target": "gpu-0",
    "name": "NVIDIA H100 80GB HBM3",
    "device_name": "NVIDIA H100 80GB HBM3",
    "compute_capability": "9.0",
    "min_compute_capability": "8.0",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "version": "1.0",
    "message": "accepted",
    "reason": "",
    "result_url": "/api/v1/requests/req-123/result",
    "code": "rate_limited",
    "field": "priority",
}


def _css() -> str:
    return files("gpu_router.shim.http").joinpath("assets/docs.css").read_text(encoding="utf-8")


class _Schemas:
    def __init__(self, components: dict[str, Any]) -> None:
        self.components = components

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return dict(self.components.get(ref.rsplit("/", 1)[-1], {}))
        return schema

    def type_name(self, schema: dict[str, Any]) -> str:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
        if "anyOf" in schema:
            return " | ".join(self.type_name(s) for s in schema["anyOf"])
        if "const" in schema:
            return f"<code>{escape(json.dumps(schema['const']))}</code>"
        if "enum" in schema:
            return " | ".join(f"<code>{escape(json.dumps(v))}</code>" for v in schema["enum"])
        kind = schema.get("type", "any")
        if kind == "array":
            return f"array of {self.type_name(schema.get('items', {}))}"
        if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
            return f"object of {self.type_name(schema['additionalProperties'])}"
        return escape(str(kind))

    def example(self, schema: dict[str, Any], name: str = "", depth: int = 0) -> Any:
        schema = self.resolve(schema)
        if depth > 6:
            return None
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][0]
        if "anyOf" in schema:
            options = [s for s in schema["anyOf"] if s.get("type") != "null"]
            return self.example(options[0], name, depth) if options else None
        kind = schema.get("type")
        if kind == "object":
            props = schema.get("properties", {})
            if not props:
                extra = schema.get("additionalProperties")
                if isinstance(extra, dict) and extra:
                    return {f"{name or 'key'}-0": self.example(extra, "", depth + 1)}
                return {}
            return {k: self.example(v, k, depth + 1) for k, v in props.items()}
        if kind == "array":
            return [self.example(schema.get("items", {}), name, depth + 1)]
        if kind == "string":
            if name.endswith("time") or name == "timestamp":
                return "2026-01-01T12:00:00.000Z"
            return _STRINGS.get(name, name or "string")
        if kind == "integer":
            return int(schema.get("minimum", 0)) + 1
        if kind == "number":
            return float(schema.get("minimum", 0)) + 0.5
        if kind == "boolean":
            return True
        return None

    def fields(self, schema: dict[str, Any]) -> str:
        schema = self.resolve(schema)
        props = schema.get("properties", {})
        if not props:
            return ""
        required = set(schema.get("required", []))
        rows = []
        for name, prop in props.items():
            notes = [escape(prop["description"])] if prop.get("description") else []
            # the constraints of a nullable field sit in its non-null branch
            branches = [prop, *(b for b in prop.get("anyOf", []) if b.get("type") != "null")]
            for key, label in (
                ("minimum", "min"),
                ("maximum", "max"),
                ("maxLength", "max length"),
                ("pattern", "pattern"),
            ):
                for b in branches:
                    if key in b:
                        notes.append(f"{label} <code>{escape(str(b[key]))}</code>")
                        break
            if "default" in prop and prop["default"] is not None:
                notes.append(f"default <code>{escape(json.dumps(prop['default']))}</code>")
            rows.append(
                f"<tr><td><code>{escape(name)}</code></td><td>{self.type_name(prop)}</td>"
                f"<td>{'yes' if name in required else ''}</td><td>{'; '.join(notes)}</td></tr>"
            )
        head = "<tr><th>field</th><th>type</th><th>required</th><th>notes</th></tr>"
        return f"<table>{head}{''.join(rows)}</table>"


def _pre(value: Any) -> str:
    return f"<pre>{escape(json.dumps(value, indent=2))}</pre>"


def _anchor(method: str, path: str) -> str:
    clean = "".join(c if c.isalnum() else "-" for c in path).strip("-")
    return f"op-{method}-{clean}"


def _answer_example(sc: _Schemas, status: int, schema: dict[str, Any], path: str) -> Any:
    out = sc.example(schema)
    if isinstance(out, dict) and out.get("status") == "error":
        code = ERROR_CODES.get(status, "error")
        if path == "/health":
            code = "not_ready"
        else:
            out["data"] = None
        out["error"] = {"code": code, "message": f"({code})"}
        if status in (429, 503):
            out["error"]["retry_after"] = 1.0
    return out


def _operation(sc: _Schemas, path: str, method: str, op: dict[str, Any]) -> str:
    parts = [
        f'<section class="op" id="{_anchor(method, path)}">',
        f'<h3><span class="method {method}">{method.upper()}</span>{escape(path)}</h3>',
        (
            f'<p class="summary">{escape(op.get("summary", ""))} '
            f'<span class="tag">[{escape(", ".join(op.get("tags", [])))}]</span></p>'
        ),
        "<p>Auth: "
        + ("none" if op.get("security") == [] else "<code>Authorization: Bearer KEY</code>")
        + "</p>",
    ]
    params = op.get("parameters", [])
    if params:
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td>{'yes' if p.get('required') else ''}</td>"
            f"<td>{escape(p.get('description', ''))}; pattern "
            f"<code>{escape(p.get('schema', {}).get('pattern', ''))}</code></td></tr>"
            for p in params
        )
        parts.append(
            "<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th>"
            f"<th>notes</th></tr>{rows}</table>"
        )
    body = op.get("requestBody")
    if body:
        schema = body["content"]["application/json"]["schema"]
        req = "required" if body.get("required") else "optional"
        parts.append(f"<h4>Body ({req}, application/json): {sc.type_name(schema)}</h4>")
        parts.append(sc.fields(schema))
        example = sc.example(schema)
        if isinstance(example, dict):  # the optional fields that may be null are left out
            props = sc.resolve(schema).get("properties", {})
            nullable = {k for k, v in props.items() if {"type": "null"} in v.get("anyOf", [])}
            example = {k: v for k, v in example.items() if k not in nullable}
        parts.append("<details open><summary>Example body</summary>")
        parts.append(_pre(example) + "</details>")
    parts.append("<h4>Answers</h4>")
    for status, resp in op.get("responses", {}).items():
        content = resp.get("content", {})
        label = f'<span class="status">{escape(status)}</span> {escape(resp["description"])}'
        if "application/json" in content:
            ex = _answer_example(sc, int(status), content["application/json"]["schema"], path)
            open_ = " open" if status.startswith("2") else ""
            parts.append(f"<details{open_}><summary>{label}</summary>{_pre(ex)}</details>")
        else:
            kind = next(iter(content), "")
            parts.append(f"<p>{label} (<code>{escape(kind)}</code>)</p>")
    parts.append("</section>")
    return "\n".join(parts)


def render_docs(doc: dict[str, Any]) -> str:
    """The HTML page of an OpenAPI document."""
    sc = _Schemas(doc.get("components", {}).get("schemas", {}))
    info = doc.get("info", {})
    title = escape(info.get("title", "API"))
    nav, ops = ["<h2>Endpoints</h2>"], []
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                nav.append(
                    f'<a href="#{_anchor(method, path)}"><span class="method {method}">'
                    f"{method.upper()}</span>{escape(path)}</a>"
                )
                ops.append(_operation(sc, path, method, item[method]))
    nav.append("<h2>Schemas</h2>")
    schemas = []
    for name, schema in sorted(sc.components.items()):
        nav.append(f'<a href="#schema-{escape(name)}">{escape(name)}</a>')
        desc = escape(schema.get("description", ""))
        schemas.append(
            f'<section class="op" id="schema-{escape(name)}"><h3>{escape(name)}</h3>'
            f"<p>{desc}</p>{sc.fields(schema)}</section>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}: API reference</title><style>{_css()}</style></head><body>"
        f"<header><h1>{title} <small>{escape(info.get('version', ''))}</small></h1>"
        f"<p>{escape(info.get('description', ''))}</p>"
        "<p>Every JSON answer is the envelope <code>{status, data, error, meta}</code>. "
        'Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI '
        f"{escape(doc.get('openapi', ''))}).</p></header>"
        f'<div class="layout"><nav>{"".join(nav)}</nav><main><h2>Endpoints</h2>'
        + "\n".join(ops)
        + "<h2>Schemas</h2>"
        + "\n".join(schemas)
        + "</main></div></body></html>\n"
    )
