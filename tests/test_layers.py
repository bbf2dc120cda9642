"""The layers import only what is below them: datasets <- models <- evaluation <- platform.

``unips.models`` and ``unips.evaluation`` run outside the platform (no Ray, no MLflow); the
network knows nothing of evaluation; the data layer knows neither. Every module of each
package is imported, in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PLATFORM = ["unips.platform", "ray", "mlflow"]


@pytest.mark.parametrize(("package", "forbidden"), [
    ("unips.datasets", ["unips.models", "unips.evaluation", *PLATFORM]),
    ("unips.models", ["unips.evaluation", *PLATFORM]),
    ("unips.evaluation", ["unips.models", *PLATFORM]),
])
def test_a_layer_imports_nothing_above_it(package: str, forbidden: list[str]) -> None:
    code = (f"import importlib, json, pkgutil, sys, {package} as p\n"
            "for m in pkgutil.iter_modules(p.__path__): importlib.import_module(f'{p.__name__}.{m.name}')\n"
            "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                       text=True).stdout)
    assert len([m for m in loaded if m.startswith(package + ".")]) >= 5  # it did import the package's modules
    leaks = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert leaks == [], f"{package} imports {leaks}"
