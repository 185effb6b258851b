"""`gpu-router serve`'s command line over the config: the store it names."""

from __future__ import annotations

import argparse

from gpu_router.shim.serve import add_arguments, resolve


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_store_names_a_postgresql_url_or_a_journal_file(tmp_path):
    (tmp_path / "config.yaml").write_text("journal:\n  lazy_commit_ms: 5.0\n")
    env = {"CONFIG_PATH": str(tmp_path / "config.yaml")}
    url = "postgresql://router@db.example:5432/gpu_router"
    cfg = resolve(parsed("--store", url), env)
    assert cfg.journal.path == url and cfg.journal.lazy_commit_ms == 5.0
    assert resolve(parsed("--journal", "j.sqlite3"), env).journal.path == "j.sqlite3"
    assert resolve(parsed(), env).journal.path == "gpu-router-journal.sqlite3"
