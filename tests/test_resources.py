from gpu_router.resources import data_dir


def test_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GPU_ROUTER_DATA", str(tmp_path))
    assert data_dir() == tmp_path


def test_data_dir_is_the_checkouts_own(monkeypatch):
    monkeypatch.delenv("GPU_ROUTER_DATA", raising=False)
    root = data_dir()
    assert root.name == "data" and (root.parent / "pyproject.toml").exists()
    assert (root / "traces" / "azure_llm_2023_conv.csv").is_file()
    assert (root / "fixtures" / "h100_service_times.json").is_file()
