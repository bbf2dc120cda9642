"""Every evaluation module imports without Ray or MLflow (evaluation runs outside the platform too)."""

from __future__ import annotations

import subprocess
import sys


def test_evaluation_modules_import_without_ray_or_mlflow() -> None:
    modules = ["pq_stats", "pq_files", "pq", "semantic", "coco_ap", "export", "evaluator", "trim", "perturb",
               "visualize"]
    code = ("import sys, unips.evaluation; " + "; ".join(f"import unips.evaluation.{m}" for m in modules)
            + "; print(sorted(m for m in ('ray', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
