"""The paper's tables from a study's MLflow runs, with pandas.

:func:`study_rows` reads the study's row runs (one per row and seed) with
an MLflow client; :func:`build_table` averages them over seeds per table spec and
puts the paper's figures beside ours; :func:`write_tables` writes Markdown, LaTeX or CSV.
The CSV keeps full precision (mean, std and seed count per metric); Markdown and LaTeX
round to one decimal, as the paper does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
from scipy import stats as scipy_stats

from unips.platform.studies import TAG_KIND, TAG_ROW, TAG_SEED, TAG_STUDY, PaperDelta, TableSpec
from unips.platform.tracking import find_runs

ROW_COLUMN = f"tags.{TAG_ROW}"  # the column mlflow.search_runs gives the row tag
SEED_COLUMN = f"tags.{TAG_SEED}"
PAPER_COLUMNS = ["what", "metric", "ours", "ci95_low", "ci95_high", "paper", "dataset", "ours - paper"]


@dataclass
class Table:
    """One paper table: ``values`` (rows x metrics: mean, std, n) and the paper comparisons."""

    spec: TableSpec
    values: pd.DataFrame  # index: row names; columns: MultiIndex (metric, "mean" | "std" | "n")
    paper: pd.DataFrame  # one line per comparison: PAPER_COLUMNS


def _search(tracking_uri: str, study: str, kind: str) -> pd.DataFrame:
    """The study's runs of one kind, one line each: ``run_id`` and ``metrics.*``, ``params.*``, ``tags.*``
    columns (what ``mlflow.search_runs`` gives, read through a client: nothing process-wide is set)."""
    runs = find_runs(tracking_uri, {TAG_STUDY: study, TAG_KIND: kind})
    return pd.DataFrame([{"run_id": run.info.run_id, **{f"metrics.{k}": v for k, v in run.data.metrics.items()},
                          **{f"params.{k}": v for k, v in run.data.params.items()},
                          **{f"tags.{k}": v for k, v in run.data.tags.items()}} for run in runs])


def study_rows(study: str, tracking_uri: str) -> pd.DataFrame:
    """Every row run of ``study``: one line per (row, seed), metrics as ``metrics.<name>`` columns."""
    runs = _search(tracking_uri, study, "row")
    if runs.empty:
        raise LookupError(f"no row runs of study {study!r} in {tracking_uri}: is the name right, "
                          "and did its trials finish?")
    return runs


LATEST = "latest"  # as a study name: the newest study in the store


def study_name(study: str, tracking_uri: str) -> str:
    """``study``, or for ``latest`` the name of the newest study in the store."""
    if study != LATEST:
        return study
    runs = find_runs(tracking_uri, {TAG_KIND: "study"})
    if not runs:
        raise LookupError(f"no study in {tracking_uri}: run experiments/ablation.py first, or pass --tracking-uri")
    return runs[0].data.tags[TAG_STUDY]


def study_parent(study: str, tracking_uri: str) -> pd.Series:
    """The study's parent run (its params say preset, tables and seeds)."""
    runs = _search(tracking_uri, study, "study")
    if runs.empty:
        known = sorted({run.data.tags[TAG_STUDY] for run in find_runs(tracking_uri, {TAG_KIND: "study"})})
        raise LookupError(f"no study named {study!r} in {tracking_uri}; "
                          + (f"its studies: {', '.join(known)}" if known else "it holds no study"))
    return runs.iloc[0]


def build_table(spec: TableSpec, runs: pd.DataFrame, dataset: str) -> Table:
    """Mean, std and seed count of each column for each row of ``spec``; the paper's figures beside them.

    ``dataset`` (the study preset's) decides which of the paper's figures apply: the
    paper's absolute numbers are Cityscapes ones, its differences name their dataset.
    """
    stats = {}
    for row in spec.rows:
        mine = runs[runs[ROW_COLUMN] == row.name]
        if mine.empty:
            raise LookupError(f"table {spec.key}: the study has no runs of row {row.name!r}")
        for metric in spec.columns:
            column = mine.get(f"metrics.{metric}")
            values = column.dropna() if column is not None else pd.Series(dtype=float)
            stats[(row.name, metric)] = {
                "mean": values.mean() if len(values) else math.nan,
                "std": values.std(ddof=1) if len(values) > 1 else math.nan,
                "n": len(values),
            }
    values = pd.DataFrame.from_dict(stats, orient="index")
    values.index = pd.MultiIndex.from_tuples(values.index, names=["row", "metric"])
    values = values.unstack("metric").swaplevel(axis=1)
    values = values.reindex(index=[row.name for row in spec.rows],
                            columns=pd.MultiIndex.from_product([spec.columns, ["mean", "std", "n"]]))

    comparisons = []
    for (row, metric), paper in spec.paper_values.items():
        if dataset == spec.paper_dataset and metric in spec.columns:
            ours = values.loc[row, (metric, "mean")]
            comparisons.append({"what": row, "metric": metric, "ours": ours, "ci95_low": math.nan,
                                "ci95_high": math.nan, "paper": paper, "dataset": dataset,
                                "ours - paper": ours - paper})
    for delta in spec.paper_deltas:
        ours, low, high = paired_difference(runs, delta)
        paper = math.nan if delta.value is None else delta.value
        comparisons.append({"what": f"{delta.row} - {delta.reference}", "metric": delta.metric, "ours": ours,
                            "ci95_low": low, "ci95_high": high, "paper": paper, "dataset": delta.dataset,
                            "ours - paper": ours - paper})
    return Table(spec, values, pd.DataFrame(comparisons, columns=PAPER_COLUMNS))


def paired_difference(runs: pd.DataFrame, delta: PaperDelta) -> tuple[float, float, float]:
    """Mean of ``row - reference`` over the seeds both have, and its 95% interval (Student's t).

    Rows of one seed start from the same weights and see the same data order, so their difference
    is paired by seed; the interval is NaN with fewer than two seeds.
    """
    def by_seed(row: str) -> pd.Series:
        mine = runs[runs[ROW_COLUMN] == row]
        column = mine.get(f"metrics.{delta.metric}")
        if column is None or SEED_COLUMN not in mine:
            return pd.Series(dtype=float)
        return pd.Series(column.to_numpy(), index=mine[SEED_COLUMN].to_numpy()).dropna()

    differences = (by_seed(delta.row) - by_seed(delta.reference)).dropna()
    if differences.empty:
        return math.nan, math.nan, math.nan
    mean = float(differences.mean())
    half = seed_interval(differences.std(ddof=1) if len(differences) > 1 else math.nan, len(differences))
    return mean, mean - half, mean + half


def seed_interval(std: float, n: int) -> float:
    """Half-width of the 95% interval (Student's t) of a mean over ``n`` seeds with spread ``std``; NaN
    below two seeds."""
    if n < 2 or math.isnan(std):
        return math.nan
    return float(scipy_stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def display_frame(table: Table) -> pd.DataFrame:
    """Rows x metrics as text: ``mean`` or ``mean ± std`` over seeds."""
    return pd.DataFrame(
        {metric: [_cell(table.values.loc[row, (metric, "mean")], table.values.loc[row, (metric, "std")])
                  for row in table.values.index] for metric in table.spec.columns},
        index=pd.Index(table.values.index, name="row"),
    )


def comparison_frame(table: Table) -> pd.DataFrame:
    """The comparisons as text: ours with its 95% interval, the paper's figure (``-`` where it gives none)."""
    def interval(line: pd.Series) -> str:
        if math.isnan(line["ci95_low"]):
            return "-"
        return f"[{line['ci95_low']:+.2f}, {line['ci95_high']:+.2f}]"

    def number(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.2f}"

    return pd.DataFrame({
        "what": table.paper["what"], "metric": table.paper["metric"], "ours": table.paper["ours"].map(number),
        "95% interval": table.paper.apply(interval, axis=1), "paper": table.paper["paper"].map(number),
        "dataset": table.paper["dataset"].where(table.paper["paper"].notna(), "-"),
        "ours - paper": table.paper["ours - paper"].map(number),
    })


def to_markdown(table: Table, seeds: int) -> str:
    """The table as Markdown: title, our numbers, then the differences, with the paper's figures beside ours."""
    spread = f", mean ± std over {seeds} seeds" if seeds > 1 else ""
    parts = [f"### Table {table.spec.key}: {table.spec.title}{spread}", "", display_frame(table).to_markdown()]
    if not table.paper.empty:
        parts += ["", "Differences (paired by seed, 95% interval) and the paper's figures:", "",
                  comparison_frame(table).to_markdown(index=False, disable_numparse=True)]
    return "\n".join(parts) + "\n"


def _latex_escape(text: str) -> str:
    return text.replace("_", "\\_").replace("%", "\\%").replace("±", "$\\pm$")


def to_latex(table: Table, seeds: int) -> str:
    """The table as LaTeX (booktabs), our numbers then the paper comparisons."""
    spread = f", mean $\\pm$ std over {seeds} seeds" if seeds > 1 else ""
    frame = display_frame(table).map(_latex_escape)
    frame = frame.rename(columns=_latex_escape, index=_latex_escape)
    out = frame.to_latex(caption=f"Table {table.spec.key}: {table.spec.title}{spread}",
                         label=f"tab:{table.spec.key}", escape=False)
    if not table.paper.empty:
        paper = comparison_frame(table)
        paper = paper.assign(metric=paper["metric"].map(_latex_escape)).rename(columns=_latex_escape)
        out += "\n" + paper.to_latex(index=False, escape=False, caption=f"Table {table.spec.key}: differences")
    return out


def to_csv(table: Table) -> str:
    """Full precision, one line per (row, metric): mean, std, n, and the paper comparisons below."""
    long = table.values.stack(level=0, future_stack=True).reset_index()
    long.columns = ["row", "metric", *long.columns[2:]]
    return long.to_csv(index=False)


TableFormat = Literal["md", "latex", "csv"]


def write_tables(tables: list[Table], out: Path, fmt: TableFormat, seeds: int) -> list[Path]:
    """``table_<key>.<md|tex|csv>`` per table (and ``paper_<key>.csv`` comparisons with csv)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table in tables:
        if fmt == "md":
            text, suffix = to_markdown(table, seeds), "md"
        elif fmt == "latex":
            text, suffix = to_latex(table, seeds), "tex"
        elif fmt == "csv":
            text, suffix = to_csv(table), "csv"
            if not table.paper.empty:
                path = out / f"paper_{table.spec.key}.csv"
                path.write_text(table.paper.to_csv(index=False))
                written.append(path)
        else:
            raise ValueError(f"unknown format {fmt!r}: md, latex or csv")
        path = out / f"table_{table.spec.key}.{suffix}"
        path.write_text(text)
        written.append(path)
    return written
