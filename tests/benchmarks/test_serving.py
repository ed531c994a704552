"""The serving benchmark's wiring across its modules (no servers, peers or training needed)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def serving(import_benchmark):
    return import_benchmark("serving")


@pytest.fixture(scope="module")
def servers(import_benchmark):
    return import_benchmark("serving_servers")


def test_the_floor_server_runs_serving_py_itself(servers, tmp_path: Path) -> None:
    floor = servers.floor_server(tmp_path)
    script = Path(floor.command[1])
    assert script.name == "serving.py"
    assert script.is_file()
    assert floor.command[2:] == ["--serve-floor", str(floor.port)]


def test_without_the_peers_it_says_so_and_starts_nothing(serving, tmp_path: Path, capsys) -> None:
    assert serving.main(["--peers", str(tmp_path), "--mlserver-venv", str(tmp_path / "venv")]) == 2
    assert "no MLServer in" in capsys.readouterr().err
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "mlserver").touch()
    assert serving.main(["--peers", str(tmp_path), "--mlserver-venv", str(tmp_path / "venv")]) == 2
    assert "lacks load.py or mlserver/serve.sh" in capsys.readouterr().err
