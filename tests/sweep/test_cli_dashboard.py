from __future__ import annotations

from gpu_router.cli import main
from gpu_router.sweep import cli_dashboard


def test_dashboard_command(capsys):
    assert main(["dashboard", "results/x", "--port", "9999", "--print-command"]) == 0
    cmd = capsys.readouterr().out.split()
    assert cmd[1:4] == ["-m", "streamlit", "run"]
    assert cmd[4] == str(cli_dashboard.APP) and cli_dashboard.APP.is_file()
    assert cmd[cmd.index("--server.port") + 1] == "9999"
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[-3:] == ["--", "--results", "results/x"]


def test_missing_app_is_an_error(tmp_path, capsys):
    assert main(["dashboard", "--app", str(tmp_path / "none.py")]) == 2
    assert "no app" in capsys.readouterr().err
