"""A study's results on its parent MLflow run: the tables (Markdown, LaTeX, CSV) and one figure.

The figure makes a study's rows comparable on one page, without opening its child runs: per
table, each row's headline metric (PQ, or the table's first column) with its 95% interval over
seeds, and beside it the differences the paper states (or implies) with ours and their
intervals. Drawn with matplotlib's object API (no pyplot state), so it is safe in any process.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from unips.platform.studies import select
from unips.platform.tables import (Table, build_table, seed_interval, study_name, study_parent, study_rows,
                                  write_tables)

FIGURE = "figures/study.png"  # the figure's artifact path on the study's parent run
TABLE_FORMATS = ("md", "latex", "csv")


def headline(table: Table) -> str:
    """The metric a table is read by: PQ where it has it, else its first column."""
    return "PQ" if "PQ" in table.spec.columns else table.spec.columns[0]


def study_figure(tables: list[Table]) -> Figure:
    """Per table, left: each row's headline metric with its seed interval; right: the differences, ours
    (dot, interval) and the paper's figure (cross) where it gives one."""
    heights = [max(len(table.spec.rows), len(table.paper), 1) for table in tables]
    figure = Figure(figsize=(12, 1.2 + 0.42 * sum(heights) + 0.9 * len(tables)), layout="constrained")
    grid = figure.add_gridspec(len(tables), 2, height_ratios=heights, width_ratios=[1, 1.3])
    for index, table in enumerate(tables):
        _rows_panel(figure.add_subplot(grid[index, 0]), table)
        _differences_panel(figure.add_subplot(grid[index, 1]), table)
    return figure


def _rows_panel(axes, table: Table) -> None:
    metric = headline(table)
    values = table.values[metric]
    names = list(values.index)[::-1]  # the first row on top
    means = [values.loc[name, "mean"] for name in names]
    halves = [seed_interval(values.loc[name, "std"], int(values.loc[name, "n"]))
              for name in names]
    axes.errorbar(means, range(len(names)), xerr=[0 if math.isnan(h) else h for h in halves], fmt="o",
                  color="tab:blue", capsize=3)
    axes.set_yticks(range(len(names)), names)
    axes.set_ylim(-0.6, len(names) - 0.4)
    seeds = int(values["n"].max()) if len(values) else 0
    axes.set_title(f"Table {table.spec.key}: {metric}" + (f" (95% interval over {seeds} seeds)" if seeds > 1 else ""),
                   fontsize=10, loc="left")
    axes.grid(axis="x", alpha=0.3)


def _differences_panel(axes, table: Table) -> None:
    paper = table.paper[::-1]  # the first comparison on top
    if paper.empty:
        axes.set_axis_off()
        axes.text(0.0, 0.5, "the paper states no difference for this table", transform=axes.transAxes)
        return
    positions = range(len(paper))
    ours = paper["ours"].to_numpy()
    low, high = paper["ci95_low"].to_numpy(), paper["ci95_high"].to_numpy()
    errors = [[0 if math.isnan(o - lo) else o - lo for o, lo in zip(ours, low)],
              [0 if math.isnan(hi - o) else hi - o for o, hi in zip(ours, high)]]
    axes.errorbar(ours, positions, xerr=errors, fmt="o", color="tab:blue", capsize=3, label="ours")
    stated = paper["paper"].notna().to_numpy()
    if stated.any():
        axes.scatter(paper["paper"].to_numpy()[stated], [p for p, s in zip(positions, stated) if s], marker="x",
                     s=60, color="tab:red", label="paper", zorder=3)
    axes.axvline(0, color="grey", linewidth=0.8)
    axes.set_yticks(positions, [f"{what} ({metric})" for what, metric in zip(paper["what"], paper["metric"])])
    axes.set_ylim(-0.6, len(paper) - 0.4)
    axes.set_title("differences: ours (95% interval over seeds) and the paper's", fontsize=10, loc="left")
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(axis="x", alpha=0.3)


def study_tables(study: str, tracking_uri: str) -> tuple[list[Table], int, str]:
    """The study's tables from its MLflow runs (``latest``: the newest study's), its seed count and its parent
    run's id."""
    study = study_name(study, tracking_uri)
    parent = study_parent(study, tracking_uri)
    runs = study_rows(study, tracking_uri)
    tables = [build_table(spec, runs, parent["params.dataset"]) for spec in select(parent["params.tables"].split(","))]
    return tables, int(parent["params.seeds"]), parent["run_id"]


def log_study_report(tables: list[Table], seeds: int, parent_run_id: str, tracking_uri: str,
                     out: Path | None = None) -> None:
    """The tables in every format and the figure as artifacts of the study's parent run (``tables/``,
    :data:`FIGURE`; a second call replaces the first's), the figure also to ``out/study.png``."""
    client = MlflowClient(tracking_uri)
    with tempfile.TemporaryDirectory() as folder:
        for fmt in TABLE_FORMATS:
            for path in write_tables(tables, Path(folder), fmt, seeds):
                client.log_artifact(parent_run_id, str(path), "tables")
    figure = study_figure(tables)
    client.log_figure(parent_run_id, figure, FIGURE, save_kwargs={"dpi": 110})
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        figure.savefig(out / Path(FIGURE).name, dpi=110)
