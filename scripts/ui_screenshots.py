"""Screenshots of a study in the MLflow UI, as docs/mlflow.md shows them.

    .venv/bin/python scripts/ui_screenshots.py --store sqlite:///$PWD/mlflow.db --study NAME --out docs/images

Starts a real ``mlflow server`` on 127.0.0.1 for the store, and headless Chromium (Debian's
``chromium`` package) driven over its DevTools protocol: the UI's local settings are set first
(the model-training view; the assistant panel, which would open on a first visit, closed), then
each page is loaded, left to settle and captured. Both processes stop at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import aiohttp
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from unips.platform.tracking import find_runs  # noqa: E402

WIDTH, HEIGHT = 1600, 1000
# The UI's own settings in the browser's local storage (key_v<version> -> JSON).
SETTINGS = {"mlflow.workflowType_v1": "machine_learning", "mlflow.assistant.panelOpen_v1": False,
            "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True}
# The run list's state as MLflow 3.17 keeps it per experiment (its defaults; pages() fills in the study).
RUN_LIST_STATE = {
    "orderByKey": "attributes.start_time", "orderByAsc": False, "startTime": "ALL", "lifecycleFilter": "Active",
    "datasetsFilter": [], "modelVersionFilter": "All Runs", "columnOrder": [], "columnWidths": {}, "runsPinned": [],
    "runsHidden": [], "runsVisibilityMap": {}, "runsHiddenMode": "FIRST_10_RUNS", "viewMaximized": False,
    "runListHidden": False, "isAccordionReordered": False, "useGroupedValuesInCharts": True, "hideEmptyCharts": True,
    "groupBy": None, "groupsExpanded": {}, "autoRefreshEnabled": False,
    "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer") from None
            time.sleep(0.5)


def pages(url: str, study: str | None) -> tuple[dict[str, str], dict[str, object]]:
    """Screenshot name -> page of the study's runs in the UI, and the local-storage settings that show them:
    the model-training view, the assistant closed, and in the run list the study's row runs under their
    parent (expanded) with their table's metrics and the row/seed tags as columns."""
    studies = find_runs(url, {"unips.kind": "study", **({"unips.study": study} if study else {})})
    if not studies:
        raise SystemExit(f"error: no study {study or ''} in the store")
    parent = studies[0]
    study, experiment = parent.data.tags["unips.study"], parent.info.experiment_id
    training = find_runs(url, {"unips.kind": "training", "unips.study": study})[-1]
    rows = find_runs(url, {"unips.kind": "row", "unips.study": study})
    metrics = sorted({key for row in rows for key in row.data.metrics})
    search = f"tags.`unips.study` = '{study}' and tags.`unips.kind` = 'row'"
    listing = f"{url}/#/experiments/{experiment}/runs?workflowType=machine_learning&searchFilter={quote(search)}"
    run = f"{url}/#/experiments/{experiment}/runs"
    shots = {
        "mlflow_study_runs": listing,
        "mlflow_study_charts": listing + "&compareRunsMode=CHART",
        "mlflow_study_figure": f"{run}/{parent.info.run_id}/artifacts/figures/study.png",
        "mlflow_training_overview": f"{run}/{training.info.run_id}",
        "mlflow_training_images": f"{run}/{training.info.run_id}/artifacts/{last_picture(url, training.info.run_id)}",
    }
    columns = [*(f"metrics.`{key}`" for key in metrics), "tags.`unips.seed`", "attributes.`Dataset`"]
    page_state = {**RUN_LIST_STATE, "searchFilter": search, "runsExpanded": {parent.info.run_id: True},
                  "selectedColumns": columns}
    settings = {**SETTINGS, f'MLflowLocalStorage-1.1-ExperimentPage-["{experiment}"]-ReactComponentState': page_state}
    return shots, settings


def last_picture(url: str, run_id: str) -> str:
    """The artifact path of the run's picture of its first image at its last evaluation (``images/<mode>~<image>
    +step+<step>+...png``, as ``log_image`` names them)."""
    files = [a.path for a in MlflowClient(url).list_artifacts(run_id, "images") if a.path.endswith(".png")]
    first = min(path.split("+")[0] for path in files)
    return max((path for path in files if path.split("+")[0] == first), key=lambda path: int(path.split("+")[2]))


class DevTools:
    """One page of a browser, over Chromium's DevTools protocol (a websocket of JSON commands)."""

    def __init__(self, socket_: aiohttp.ClientWebSocketResponse) -> None:
        self.socket, self.next_id = socket_, 0

    async def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        await self.socket.send_json({"id": self.next_id, "method": method, "params": params})
        while True:  # events arrive in between; the answer carries our id
            message = json.loads((await self.socket.receive()).data)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str) -> object:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def settle(self, seconds: float) -> None:
        """Wait until no spinner has shown for a second (MLflow draws charts lazily), at most ``seconds``."""
        deadline, quiet_since = time.monotonic() + seconds, time.monotonic()
        while time.monotonic() < deadline:
            busy = await self.evaluate("document.querySelectorAll('[class*=spinner i], [aria-busy=true]').length")
            quiet_since = time.monotonic() if busy else quiet_since
            if time.monotonic() - quiet_since > 1.5:
                return
            await asyncio.sleep(0.5)


async def capture(devtools_port: int, origin: str, shots: dict[str, str], settings: dict[str, object],
                  out: Path) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{devtools_port}/json") as response:
        target = next(t for t in json.load(response) if t["type"] == "page")
    async with aiohttp.ClientSession() as session, session.ws_connect(target["webSocketDebuggerUrl"],
                                                                      max_msg_size=0) as ws:
        page = DevTools(ws)
        await page.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                        mobile=False)
        await page.call("Page.navigate", url=origin)
        await asyncio.sleep(3)
        for name, url in shots.items():
            # The settings before each page (still on the server's origin), then the page loaded afresh: a new
            # hash alone would not reload the app.
            for key, value in settings.items():
                await page.evaluate(f"localStorage.setItem({json.dumps(key)}, {json.dumps(json.dumps(value))})")
            await page.call("Page.navigate", url="about:blank")
            await asyncio.sleep(0.5)
            await page.call("Page.navigate", url=url)
            await asyncio.sleep(4)
            await page.settle(30)
            shot = await page.call("Page.captureScreenshot", format="png")
            (out / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
            print(f"{out / name}.png  <- {url}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=f"sqlite:///{Path.cwd() / 'mlflow.db'}", help="the study's MLflow store")
    parser.add_argument("--study", default=None, help="the study's name (default: the latest)")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen([str(mlflow), "server", "--backend-store-uri", args.store, "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ,
                                                              "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    profile = tempfile.mkdtemp(prefix="unips-chromium-")
    browser = None
    try:
        origin = f"http://127.0.0.1:{port}"
        wait_for(f"{origin}/health", server)
        shots, settings = pages(origin, args.study)
        browser = subprocess.Popen([args.chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                                    "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}",
                                    "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert browser.stderr is not None
        for line in browser.stderr:  # "DevTools listening on ws://127.0.0.1:<port>/devtools/browser/<id>"
            if found := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
                break
        else:
            raise RuntimeError("chromium did not open its DevTools port")
        asyncio.run(capture(int(found.group(1)), origin, shots, settings, args.out))
    finally:
        for process in (browser, server):
            if process is not None:
                process.terminate()
                process.wait(30)
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
