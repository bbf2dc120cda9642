"""The GPU benchmark's own test (without CUDA it runs the same code on the CPU at a reduced size), and the CPU
inference benchmark's at a tiny size: the code paths and the last lines, not the figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ["model.backbone.depth=18", "model.backbone.fpn_channels=16", "model.semantic.channels=16",
              "model.panoptic.affinity_channels=8", "model.detector.box_head_dim=32",
              "model.detector.mask_head_channels=8"]


@pytest.mark.slow
def test_gpu_benchmark_runs_on_the_cpu_and_prints_its_line() -> None:
    # An 18-layer backbone, narrow heads and tiny images: what is tested is the code path, not the figures
    # (the preset's heads at full width cost 30 s of CPU even at this size).
    done = subprocess.run([sys.executable, "benchmarks/gpu.py", "--crop", "64x128", "--batch", "2", "--steps", "1",
                           "--warmup", "1", "--infer-size", "64x128", "--infer-images", "1", *TINY_MODEL],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"gpu device=(\S+) train_ips=([\d.]+) train_ips_amp=([\d.]+) peak_gb=([\d.]+) "
                         r"full_ms=([\d.]+) heu_ms=([\d.]+) full_over_heu=([\d.]+)", last)
    assert match, last
    values = [float(v) for v in match.groups()[1:]]
    assert all(v > 0 for v in values), last
    assert values[-1] == pytest.approx(values[-3] / values[-2], abs=0.01)  # the ratio of the two it printed


@pytest.mark.slow
def test_inference_benchmark_prints_both_modes_and_their_ratio() -> None:
    done = subprocess.run([sys.executable, "benchmarks/inference.py", "--size", "64x128", "--images", "1",
                           *TINY_MODEL], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    *_, share, last = done.stdout.strip().splitlines()
    assert re.fullmatch(r"affinity head \(Q and the affinity product\): \d+ ms of \d+ ms in the full mode "
                        r"\(\d+\.\d%\)", share), share
    match = re.fullmatch(r"inference full_ms=(\d+) heu_ms=(\d+) ratio=([\d.]+)", last)
    assert match, last
    full, heu, ratio = (float(v) for v in match.groups())
    # The ratio of the unrounded times; the ms are printed whole, so each is off by up to 0.5.
    assert full > 0 and heu > 0 and (full - 0.5) / (heu + 0.5) - 0.01 <= ratio <= (full + 0.5) / (heu - 0.5) + 0.01
