"""The README's quick commands, taken from the README's own text and run as a user runs them.

The long ones are run elsewhere: ``make test`` (and ``make test-cluster``) is CI, ``experiments/train.py --preset smoke``
is the accuracy test, ``experiments/ablation.py`` the study tests, ``ray submit`` is
``make cluster-smoke``; benchmarks stay out of the suite.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.servers import stop_session

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ".venv/bin/"


def readme_commands(document: str = "README.md") -> list[str]:
    """Every line of the ``bash`` blocks of the README (or of another Markdown file of the repository), without
    its trailing comment."""
    text = (ROOT / document).read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def readme_command(start: str, document: str = "README.md") -> str:
    """The one command of ``document`` that starts with ``start``, its ``.venv/bin/`` made this interpreter's."""
    (command,) = [line for line in readme_commands(document) if line.startswith(start)]
    return command.replace(VENV_BIN, str(Path(sys.executable).parent) + "/", 1)


def run(command: str, cwd: Path, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


def test_the_quick_start_is_the_two_make_commands() -> None:
    assert readme_commands()[:2] == ["make demo", "make test"]


def demo_recipe() -> list[str]:
    """The commands ``make demo`` runs, as the README would write them."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert recipe, "no demo target in the Makefile"
    return [line.strip().replace("$(PY) ", VENV_BIN + "python ") for line in recipe.group(1).splitlines()]


def test_make_demo_runs_the_readme_study_commands_as_written() -> None:
    study = [line for line in readme_commands() if line.startswith((f"{VENV_BIN}python experiments/ablation.py",
                                                                     f"{VENV_BIN}python experiments/tables.py"))]
    assert study and study == demo_recipe()


# README commands that no test can run here, and what runs instead.
NOT_RUN_HERE = {
    "ray submit cluster.yaml": "needs an AWS account; `make cluster-smoke` runs `ray submit` on cluster.local.yaml",
}


def test_every_readme_command_is_run_by_a_test_or_by_make_demo() -> None:
    """Each command of the README is the quick start (``make demo``, ``make test``: CI), a line of the demo's
    recipe, or taken from the README by a test through :func:`readme_command` (its prefix names it)."""
    prefixes = set()
    for path in (ROOT / "tests").rglob("*.py"):
        prefixes |= set(re.findall(r'readme_command\(\s*"([^"]+)"\)', path.read_text()))  # the README's own
    covered = {"make demo", "make test", *demo_recipe()}
    missing = [command for command in readme_commands() if command not in covered
               and not any(command.startswith(prefix) for prefix in prefixes | set(NOT_RUN_HERE))]
    assert not missing, f"README commands no test runs: {missing}"


@pytest.mark.slow
def test_synthetic_data_command(tmp_path: Path) -> None:
    command = readme_command(".venv/bin/python -m unips.datasets.synthetic", "docs/data.md")
    run(command, tmp_path)
    train = json.loads((tmp_path / "data/syn/panoptic_train.json").read_text())
    val = json.loads((tmp_path / "data/syn/panoptic_val.json").read_text())
    assert len(train["images"]) == 200 and len(val["images"]) == 50
    assert {(image["height"], image["width"]) for image in train["images"]} == {(128, 256)}
    assert len(list((tmp_path / "data/syn/panoptic_train").glob("*.png"))) == 200


def test_configuration_command(tmp_path: Path) -> None:
    output = run(readme_command(".venv/bin/python -m unips.config", "docs/configuration.md"), tmp_path).stdout
    assert re.search(r"base_lr: 0\.02\b", output), output
    assert re.search(r"crop_size:\s*\n\s*- 96\s*\n\s*- 192", output), output


def test_statistics_command_as_docs_data_writes_it(tmp_path: Path) -> None:
    from unips.datasets import synthetic
    from unips.datasets.statistics import split_statistics

    (command,) = re.findall(r"`(\.venv/bin/python -m unips\.datasets\.statistics [^`]+)`",
                            (ROOT / "docs" / "data.md").read_text())
    synthetic.generate(tmp_path / "data" / "synthetic", num_train=2, num_val=3, height=64, width=128, seed=1)
    output = run(command.replace(VENV_BIN, str(Path(sys.executable).parent) + "/", 1), tmp_path).stdout
    printed = dict(line.split() for line in output.splitlines()[1:])
    expected = split_statistics(tmp_path / "data" / "synthetic" / "panoptic_val.json")
    assert printed["images"] == "3"
    assert printed == {key: str(value) if isinstance(value, int) else f"{value:.3f}" for key, value in expected.items()}


@pytest.mark.slow
def test_mlflow_ui_command(tmp_path: Path) -> None:
    """``mlflow ui`` on the store ``make demo`` writes, at the address the README gives."""
    command = readme_command(".venv/bin/mlflow ui")
    assert "--host 127.0.0.1" in command  # loopback only
    # The command as written; through the environment, MLflow's job runner (six consumer processes for GenAI
    # jobs, half a minute of CPU here) is off and one web worker serves instead of four: this checks neither.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_WORKERS": "1"}
    server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=tmp_path, stdin=subprocess.DEVNULL, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:5000/health", timeout=5) as response:
                    assert response.status == 200 and response.read().strip() == b"OK"
                    break
            except OSError:
                assert server.poll() is None, f"mlflow ui exited: {server.stdout.read() if server.stdout else ''}"
                assert time.monotonic() < deadline, "mlflow ui did not answer within 120 s"
                time.sleep(1)
        assert (tmp_path / "mlflow.db").exists()  # the store is the one in the current folder
    finally:
        stop_session(server)
