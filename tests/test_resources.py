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


def test_shared_folders_of_the_checkout():
    from gpu_router import resources as r

    assert r.packaged_dir("scenarios") is None  # a checkout has no packaged copy
    assert (r.scenarios_dir() / "gate" / "steady_small.yaml").is_file()
    assert (r.sweeps_dir() / "default.yaml").is_file()
    assert r.dashboard_app().is_file()


def test_find_named(tmp_path, monkeypatch):
    from gpu_router.resources import find_named, scenarios_dir

    monkeypatch.chdir(tmp_path)
    assert find_named("steady", "scenarios") == scenarios_dir() / "steady.yaml"
    assert find_named("no_such_scenario", "scenarios") is None
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "steady.yaml").write_text("name: mine\n")
    assert find_named("steady", "scenarios") == tmp_path / "scenarios" / "steady.yaml"
