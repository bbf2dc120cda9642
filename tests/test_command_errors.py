"""Bad input to the commands, run as a user runs them: exit status 1, one ``error: ...`` line that
names the culprit, no traceback (``--debug`` shows it), and nothing written on the way."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import runpy
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from unips.commands import add_mode_argument, run_command

ROOT = Path(__file__).resolve().parents[1]
TRAIN, EVALUATE, TABLES, ABLATION, SHOW = (str(ROOT / "experiments" / f"{name}.py")
                                           for name in ("train", "evaluate", "tables", "ablation", "show_data"))


@dataclass
class Finished:
    returncode: int
    stderr: str


def run(args: list[str], cwd: Path) -> Finished:
    """The command in a process of its own, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "UNIPS_DEBUG")}
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    return Finished(done.returncode, done.stderr)


def run_here(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Finished:
    """The command's script run as ``__main__`` in this process (the same code, without paying for a new
    interpreter and its imports each time; :func:`run` covers the real process for each command)."""
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("UNIPS_DEBUG", raising=False)
    module = args[1] if args[0] == "-m" else None
    monkeypatch.setattr(sys, "argv", list(args[1:] if module else args))
    with pytest.raises(SystemExit) as exit_:
        if module:  # what its ``if __name__ == "__main__"`` line does
            run_command(importlib.import_module(module).main)
        else:
            runpy.run_path(args[0], run_name="__main__")
    return Finished(int(exit_.value.code or 0), capsys.readouterr().err)


def assert_one_error_line(done: Finished, pattern: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(pattern, last), last


def _truncated_checkpoint(folder: Path) -> Path:
    path = folder / "state.pt"
    torch.save({"model": {"w": torch.zeros(1000)}, "step": 3}, path)
    path.write_bytes(path.read_bytes()[:300])
    return path


def _foreign_checkpoint(folder: Path) -> Path:
    path = folder / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    return path


def _run_folder(folder: Path) -> Path:
    inner = folder / "smoke_20261203-010203" / "checkpoint_2026-12-03_01-02-30.000000"
    inner.mkdir(parents=True)
    torch.save({"step": 1}, inner / "state.pt")
    return inner.parent


CASES = {
    "train, unknown preset": ([TRAIN, "--preset", "nope"], r"no preset named 'nope'.*known: bench"),
    "train, unknown key": ([TRAIN, "optim.max_itr=3"], r"unknown key 'optim\.max_itr'"),
    "train, override without a value": ([TRAIN, "optim.max_iter"], r"'optim\.max_iter' is not of the form key\.sub=value"),
    "train, bad value": ([TRAIN, "optim.base_lr=fast"], r"optim\.base_lr"),
    "train, max_iter alone": ([TRAIN, "optim.max_iter=20"],
                              r"optim\.steps must increase within \(0, optim\.max_iter=20\], got \[225, 280\]: "
                              r"set optim\.steps with optim\.max_iter \(e\.g\. optim\.steps=\[15,19\]\)"),
    "train, warm-up past the end": ([TRAIN, "optim.max_iter=20", "optim.steps=[10,15]"],
                                    r"optim\.warmup_iters=50 exceeds optim\.max_iter=20"),
    "train, data root that is not there": ([TRAIN, "data.root=dta/synthetic"],
                                           r"data\.root dta/synthetic does not exist"),
    "train, Cityscapes not there": ([TRAIN, "--preset", "cityscapes_r50"], r"data\.root data/cityscapes \(cityscapes\)"),
    "train, GPUs this machine lacks": ([TRAIN, "platform.use_gpu=true"], r"platform\.use_gpu=true .* this machine has 0"),
    "train, resume with no store": ([TRAIN, "--resume"], r"no MLflow store .*mlflow\.db to resume a run from"),
    "ablation, unknown table": ([ABLATION, "--tables", "1,2"], r"unknown table\(s\) 2; known: 1, F, H, I"),
    "ablation, unknown key": ([ABLATION, "--tables", "H", "model.nope=1"], r"unknown key 'model\.nope'"),
    "tables, no store here": ([TABLES, "--study", "s"], r"no MLflow store .*mlflow\.db: run this where the study ran"),
    "show_data, data root that is not there": ([SHOW, "data.root=dta"], r"data\.root dta does not exist"),
    "show_data, unknown preset": ([SHOW, "--preset", "smok"], r"no preset named 'smok'"),
    "ablation, resume with no store": ([ABLATION, "--resume"], r"no MLflow store .*mlflow\.db to resume a study"),
    "config, unknown key": (["-m", "unips.config", "--preset", "smoke", "eval.mode=[amx]"], r"unknown key 'eval\.mode'"),
    "config, modes the model lacks": (["-m", "unips.config", "model.panoptic.use_affinity=false"],
                                      r"eval\.modes has 'full' \(argmax of P\) but model\.panoptic\.use_affinity is"),
    "statistics, missing file": (["-m", "unips.datasets.statistics", "panoptic_val.json"], r"panoptic_val\.json"),
    "cityscapes, no annotations": (["-m", "unips.datasets.cityscapes", "--root", "city"],
                                   r"no Cityscapes annotations for split 'train'"),
    "synthetic, degenerate size": (["-m", "unips.datasets.synthetic", "--out", "syn", "--height", "8"],
                                   r"sides >= 32 px, got .*8"),
}


@pytest.mark.parametrize("args, pattern", CASES.values(), ids=CASES.keys())
def test_a_mistake_is_one_line_naming_it(args: list[str], pattern: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    assert_one_error_line(run_here(args, tmp_path, monkeypatch, capsys), pattern)
    assert not list(tmp_path.iterdir())  # no store, no data, no run folder made on the way


@pytest.mark.parametrize("make, pattern", [
    (lambda folder: folder / "missing.pt", r"checkpoint not found: .*missing\.pt"),
    (_truncated_checkpoint, r"state\.pt is not a unips checkpoint"),
    (_foreign_checkpoint, r"other\.pt lacks \['categories', 'config', 'model', 'step'\]"),
    (_run_folder, r"smoke_20261203-010203 is a folder of checkpoints, not one; the latest: .*checkpoint_2026-12-03"),
], ids=["missing", "truncated", "not ours", "a run folder"])
def test_evaluate_names_a_bad_checkpoint(make, pattern: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    checkpoint = make(tmp_path)
    args = [EVALUATE, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out")]
    assert_one_error_line(run_here(args, tmp_path, monkeypatch, capsys), pattern)
    assert not (tmp_path / "out").exists()


def test_tables_names_the_studies_a_store_holds(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("unips")
    client.create_run(experiment, tags={"unips.study": "smoke-study-1", "unips.kind": "study"})
    assert_one_error_line(run([TABLES, "--study", "smoke-study-2", "--tracking-uri", uri], tmp_path),
                          r"no study named 'smoke-study-2' in .*; its studies: smoke-study-1$")


@pytest.mark.parametrize("args, pattern", [
    ([TRAIN, "optim.max_itr=3"], r"unknown key 'optim\.max_itr'"),
    ([ABLATION, "--tables", "2"], r"unknown table\(s\) 2"),
    ([TABLES, "--study", "s"], r"no MLflow store"),
    ([SHOW, "data.root=dta"], r"data\.root dta does not exist"),
    ([EVALUATE, "--checkpoint", "missing.pt"], r"checkpoint not found: missing\.pt"),
], ids=["train", "ablation", "tables", "show_data", "evaluate"])
def test_each_command_in_its_own_process(args: list[str], pattern: str, tmp_path: Path) -> None:
    assert_one_error_line(run(args, tmp_path), pattern)
    assert not list(tmp_path.iterdir())


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = run([TRAIN, "optim.max_itr=3", "--debug"], tmp_path)
    assert done.returncode == 1 and "Traceback" in done.stderr and "ConfigError" in done.stderr


def test_statistics_names_a_file_that_is_not_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "panoptic_val.json").write_text("{not json")
    done = run_here(["-m", "unips.datasets.statistics", "panoptic_val.json"], tmp_path, monkeypatch, capsys)
    assert_one_error_line(done, r"panoptic_val\.json is not valid JSON")


def test_tables_names_a_study_without_finished_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("unips"),
                               tags={"unips.study": "s", "unips.kind": "study"}).info.run_id
    for key, value in {"seeds": "1", "dataset": "synthetic", "tables": "H"}.items():
        client.log_param(run_id, key, value)
    done = run_here([TABLES, "--study", "s"], tmp_path, monkeypatch, capsys)
    assert_one_error_line(done, r"no row runs of study 's' in .*: is the name right, and did its trials finish\?")


@pytest.fixture
def affinity_free_checkpoint(tmp_path: Path) -> Path:
    """A network without the affinity head, saved as training saves it."""
    from tests.platform.conftest import tiny_config
    from unips.datasets.build import build_dataset
    from unips.models.build import build_model
    from unips.platform.checkpoint import save_state

    cfg = tiny_config(tmp_path / "train", "model.panoptic.use_affinity=false", "model.panoptic.end_to_end=false",
                      "eval.modes=[heu]")
    dataset = build_dataset(cfg.data, "val", train=False)
    model = build_model(cfg, dataset.categories)
    return save_state(tmp_path / "ckpt", {"model": model.state_dict(), "step": 1, "config": cfg.model_dump(mode="json"),
                                          "categories": dataset.categories.to_json()})


@pytest.mark.parametrize("extra, pattern", [
    (["--mode", "full"], r"state\.pt: eval\.modes has 'full' \(argmax of P\) but model\.panoptic\.use_affinity is false"),
    (["--data-root", "dta"], r"data\.root dta does not exist"),
], ids=["a mode the network lacks", "a data root that is not there"])
def test_evaluate_names_what_does_not_fit_the_checkpoint(extra: list[str], pattern: str,
                                                         affinity_free_checkpoint: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    args = [EVALUATE, "--checkpoint", str(affinity_free_checkpoint), "--out", str(tmp_path / "out"), *extra]
    assert_one_error_line(run_here(args, tmp_path, monkeypatch, capsys), pattern)
    assert not (tmp_path / "out").exists() and not (tmp_path / "dta").exists()


def test_workdir_is_where_a_command_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    done = run_here([TABLES, "--study", "s", "--workdir", "runs"], tmp_path, monkeypatch, capsys)
    assert_one_error_line(done, rf"no MLflow store {tmp_path}/runs/mlflow\.db:")


def test_modes_read_alike_with_spaces_or_commas_and_a_wrong_one_is_named(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser(prog="predict.py")
    add_mode_argument(parser, "inference modes")
    parser.add_argument("pictures", nargs="*")
    assert parser.parse_args(["p.png", "--mode", "full", "heu"]).modes == ["full", "heu"]
    assert parser.parse_args(["p.png", "--modes", "full,heu"]).modes == ["full", "heu"]
    assert parser.parse_args(["--mode", "heu,heu", "amx"]).modes == ["heu", "amx"]
    assert parser.parse_args(["p.png"]).modes is None
    (tmp_path / "photos").mkdir()
    for wrong, hint in ((["--mode", "ful"], ""), (["--mode", "full", str(tmp_path / "photos")], "; the pictures go")):
        with pytest.raises(SystemExit):
            parser.parse_args(wrong)
        error = capsys.readouterr().err.splitlines()[-1]
        assert error.startswith("predict.py: error: --mode: modes are full, amx, heu") and hint in error, error
        assert repr(" ".join(wrong[1:])) in error
