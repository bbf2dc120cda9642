"""Tables from MLflow row runs: means and spreads over seeds, the paper's figures beside ours, files."""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from unips.platform.studies import TABLES
from unips.platform.study_report import FIGURE, log_study_report, study_figure
from unips.platform.tables import build_table, seed_interval, study_name, study_rows, to_markdown, write_tables

# Table H for two seeds: (row, seed) -> metrics.
H_RUNS = {
    ("GT boxes", 0): {"PQ": 40.0, "PQ_th": 30.0, "PQ_st": 50.0, "SQ": 70.0, "RQ": 55.0, "IoU": 60.0, "AP_box": 10.0},
    ("GT boxes", 1): {"PQ": 42.0, "PQ_th": 31.0, "PQ_st": 51.0, "SQ": 71.0, "RQ": 56.0, "IoU": 61.0, "AP_box": 11.0},
    ("predicted boxes", 0): {"PQ": 41.0, "PQ_th": 33.0, "PQ_st": 49.0, "SQ": 70.5, "RQ": 57.0, "IoU": 60.5,
                             "AP_box": 12.0},
    ("predicted boxes", 1): {"PQ": 44.0, "PQ_th": 35.0, "PQ_st": 52.0, "SQ": 72.0, "RQ": 58.0, "IoU": 62.5,
                             "AP_box": 13.5},
}


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A real MLflow store holding the row runs of study ``s`` (and a decoy of another study)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("unips", artifact_location=(tmp_path / "mlruns").as_uri())
    for (row, seed), metrics in H_RUNS.items():
        run = client.create_run(experiment, tags={"unips.study": "s", "unips.kind": "row", "unips.row": row,
                                                  "unips.seed": str(seed), "unips.tables": "H"})
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key, value)
    decoy = client.create_run(experiment, tags={"unips.study": "other", "unips.kind": "row", "unips.row": "GT boxes"})
    client.log_metric(decoy.info.run_id, "PQ", 99.0)
    return uri


def test_a_table_holds_mean_and_spread_over_seeds_and_the_paper_difference(store: str) -> None:
    table = build_table(TABLES["H"], study_rows("s", store), dataset="cityscapes")
    for row in ("GT boxes", "predicted boxes"):
        for metric in TABLES["H"].columns:
            seeds = [H_RUNS[(row, seed)][metric] for seed in (0, 1)]
            assert table.values.loc[row, (metric, "mean")] == pytest.approx(statistics.mean(seeds))
            assert table.values.loc[row, (metric, "std")] == pytest.approx(statistics.stdev(seeds))
            assert table.values.loc[row, (metric, "n")] == 2
    paper = table.paper.set_index("metric")
    # predicted - GT: PQ (41+44)/2 - (40+42)/2 = 1.5 against the paper's +0.4; AP_box 12.75 - 10.5 = 2.25 vs +1.3.
    assert paper.loc["PQ", "ours"] == pytest.approx(1.5) and paper.loc["PQ", "paper"] == 0.4
    assert paper.loc["PQ", "ours - paper"] == pytest.approx(1.1)
    assert paper.loc["AP_box", "ours"] == pytest.approx(2.25)
    # Paired by seed: PQ differences 1 and 2; t(0.975, 1) = 12.706, sd 0.7071, so 1.5 -+ 6.353.
    assert paper.loc["PQ", "ci95_low"] == pytest.approx(1.5 - 12.7062 * 0.70711 / math.sqrt(2), abs=1e-3)
    assert paper.loc["PQ", "ci95_high"] == pytest.approx(1.5 + 12.7062 * 0.70711 / math.sqrt(2), abs=1e-3)
    markdown = to_markdown(table, seeds=2)
    assert "| GT boxes" in markdown and "41.0 ± 1.4" in markdown and "mean ± std over 2 seeds" in markdown
    assert "[-4.85, +7.85]" in markdown


def test_differences_are_paired_by_seed_and_may_lack_a_paper_figure(store: str) -> None:
    from unips.platform.studies import PaperDelta, Row, TableSpec

    spec = TableSpec("X", "x", (Row("GT boxes", (), "full"), Row("predicted boxes", (), "full")), ("PQ", "IoU"),
                     paper_deltas=(PaperDelta("predicted boxes", "GT boxes", "IoU", None),))
    line = build_table(spec, study_rows("s", store), dataset="synthetic").paper.iloc[0]
    assert line["ours"] == pytest.approx(((60.5 - 60.0) + (62.5 - 61.0)) / 2)
    assert math.isnan(line["paper"]) and math.isnan(line["ours - paper"])
    markdown = to_markdown(build_table(spec, study_rows("s", store), dataset="synthetic"), seeds=2)
    assert "| predicted boxes - GT boxes | IoU      | 1.00   | [-5.35, +7.35] | -       | -         |" in markdown


def test_absolute_paper_numbers_only_beside_the_papers_dataset(store: str, tmp_path: Path) -> None:
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("unips").experiment_id
    run = client.create_run(experiment, tags={"unips.study": "j", "unips.kind": "row", "unips.row": "msk aff e2e"})
    client.log_metric(run.info.run_id, "PQ", 60.0)
    runs = study_rows("j", store)
    beside = build_table(TABLES["J"], runs, dataset="cityscapes").paper.drop(columns=["ci95_low", "ci95_high"])
    assert beside.to_dict("records")[0] | {"ours - paper": round(beside["ours - paper"][0], 6)} == {
        "what": "msk aff e2e", "metric": "PQ", "ours": 60.0, "paper": 61.4, "dataset": "cityscapes",
        "ours - paper": -1.4}
    assert build_table(TABLES["J"], runs, dataset="synthetic").paper.empty
    # Metrics a row run lacks stay empty rather than zero.
    assert math.isnan(build_table(TABLES["J"], runs, dataset="synthetic").values.loc["msk aff e2e", ("SQ", "mean")])


def test_csv_keeps_full_precision_and_every_format_writes_a_file(store: str, tmp_path: Path) -> None:
    tables = [build_table(TABLES["H"], study_rows("s", store), dataset="synthetic")]
    written = write_tables(tables, tmp_path / "csv", "csv", seeds=2)
    frame = pd.read_csv(tmp_path / "csv" / "table_H.csv")
    pq = frame[(frame["row"] == "predicted boxes") & (frame["metric"] == "PQ")].iloc[0]
    assert pq["mean"] == 42.5 and pq["std"] == pytest.approx(statistics.stdev([41.0, 44.0])) and pq["n"] == 2
    assert {p.name for p in written} == {"table_H.csv", "paper_H.csv"}
    latex = write_tables(tables, tmp_path / "tex", "latex", seeds=2)[0].read_text()
    assert "PQ\\_th" in latex and "$\\pm$" in latex and "\\begin{tabular}" in latex
    assert (write_tables(tables, tmp_path / "md", "md", seeds=2)[0]).read_text().startswith("### Table H")


def test_a_missing_study_or_row_is_named(store: str) -> None:
    with pytest.raises(LookupError, match="'nope'"):
        study_rows("nope", store)
    with pytest.raises(LookupError, match="row 'B'"):
        build_table(TABLES["F"], study_rows("s", store), dataset="synthetic")


def test_the_study_figure_shows_each_rows_interval_and_the_papers_difference(store: str, tmp_path: Path) -> None:
    table = build_table(TABLES["H"], study_rows("s", store), dataset="synthetic")
    figure = study_figure([table])
    rows, differences = figure.axes
    # Rows: the mean PQ over the two seeds, first row on top, with the t interval of two seeds.
    (points,) = rows.containers
    means, _, (bars,) = points.lines
    assert list(means.get_xdata()) == [42.5, 41.0]
    assert [label.get_text() for label in rows.get_yticklabels()] == ["predicted boxes", "GT boxes"]
    half = seed_interval(statistics.stdev([40.0, 42.0]), 2)
    assert half == pytest.approx(12.7062 * statistics.stdev([40.0, 42.0]) / math.sqrt(2), rel=1e-4)  # t(0.975, 1)
    assert tuple(bars.get_segments()[1][:, 0]) == pytest.approx((41 - half, 41 + half))
    # Differences: ours (predicted - GT boxes: +1.5 PQ, +2.25 AP_box over the seeds), the paper's crosses.
    (ours, _, _) = differences.containers[0].lines
    assert list(ours.get_xdata())[::-1] == pytest.approx([1.5, 2.25])
    (crosses,) = [c for c in differences.collections if c.get_label() == "paper"]
    assert list(crosses.get_offsets()[:, 0])[::-1] == pytest.approx([0.4, 1.3])


def test_the_study_report_goes_to_the_parent_run_and_replaces_itself(store: str, tmp_path: Path) -> None:
    client = MlflowClient(store)
    parent = client.create_run(client.get_experiment_by_name("unips").experiment_id).info.run_id
    tables = [build_table(TABLES["H"], study_rows("s", store), dataset="synthetic")]
    for _ in range(2):
        log_study_report(tables, 2, parent, store, out=tmp_path / "out")
    logged = {f.path for folder in ("tables", "figures") for f in client.list_artifacts(parent, folder)}
    assert logged == {"tables/table_H.md", "tables/table_H.tex", "tables/table_H.csv", "tables/paper_H.csv", FIGURE}
    picture = Image.open(client.download_artifacts(parent, FIGURE, str(tmp_path)))
    assert picture.format == "PNG" and picture.size == Image.open(tmp_path / "out" / "study.png").size


def test_latest_names_the_newest_study_and_an_empty_store_says_so(store: str, tmp_path: Path) -> None:
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("unips").experiment_id
    for name in ("older", "newer"):
        client.create_run(experiment, tags={"unips.kind": "study", "unips.study": name})
        time.sleep(0.01)  # distinct start times
    assert study_name("latest", store) == "newer" and study_name("s", store) == "s"
    with pytest.raises(LookupError, match=r"no study in sqlite:///.*empty\.db: run experiments/ablation\.py first"):
        study_name("latest", f"sqlite:///{tmp_path}/empty.db")
