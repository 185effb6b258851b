"""config.example.yaml lists every config key with its default and a comment, so it
cannot drift from shim/config.py's models."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from gpu_router.shim.config import ServiceConfig, config_from_mapping

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def model_keys(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> default, for every field; nested sections are walked."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            out |= model_keys(type(default), f"{prefix}{name}.")
        else:
            out[prefix + name] = default
    return out


def file_keys(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if isinstance(v, dict) and v and not isinstance(next(iter(v)), int):
            out |= file_keys(v, f"{prefix}{k}.")
        else:
            out[prefix + k] = v
    return out


def test_every_key_with_its_default():
    raw = yaml.safe_load(EXAMPLE.read_text())
    expected = model_keys(ServiceConfig)
    got = file_keys(raw)
    assert sorted(got) == sorted(expected), {
        "missing": sorted(set(expected) - set(got)),
        "unknown": sorted(set(got) - set(expected)),
    }
    for key, default in expected.items():
        assert got[key] == default, f"{key}: file says {got[key]!r}, default is {default!r}"
    assert config_from_mapping(raw) == ServiceConfig()


def test_every_key_line_has_a_comment():
    bare = [
        line
        for line in EXAMPLE.read_text().splitlines()
        if re.match(r"^\s+[a-z_]+:\s*\S", line) and "#" not in line
    ]
    assert not bare, bare
