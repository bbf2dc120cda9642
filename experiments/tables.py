"""Regenerate the paper's tables from a study's MLflow runs.

    python experiments/tables.py --study smoke-study-20261126-101500
    python experiments/tables.py --study NAME --format latex --out outputs/tables --tracking-uri http://head:5000

Writes ``table_<key>.<md|tex|csv>`` for every table of the study into ``--out`` (our
numbers, mean ± std over seeds, and the paper's figures beside them), logs them as
artifacts of the study's parent run under ``tables/``, and prints the Markdown tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlflow.tracking import MlflowClient

from unips.commands import add_workdir_argument, enter_workdir, run_command
from unips.platform.studies import select
from unips.platform.tables import build_table, study_parent, study_rows, to_markdown, write_tables
from unips.platform.tracking import require_store, resolve_tracking_uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True, help="the name experiments/ablation.py printed (study=...)")
    parser.add_argument("--format", choices=["md", "latex", "csv"], default="md")
    parser.add_argument("--out", type=Path, default=Path("outputs/tables"), help="folder for the table files")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    add_workdir_argument(parser)
    args = parser.parse_args()
    enter_workdir(args.workdir)

    uri = resolve_tracking_uri(args.tracking_uri, None, Path.cwd())
    require_store(uri, "", "the study")
    parent = study_parent(args.study, uri)
    seeds, dataset = int(parent["params.seeds"]), parent["params.dataset"]
    runs = study_rows(args.study, uri)
    tables = [build_table(spec, runs, dataset) for spec in select(parent["params.tables"].split(","))]

    written = write_tables(tables, args.out, args.format, seeds)
    client = MlflowClient(uri)
    for path in written:
        client.log_artifact(parent["run_id"], str(path), "tables")
    for table in tables:
        print(to_markdown(table, seeds))
    print(f"wrote {len(written)} file(s) to {args.out} (and to the artifacts of study run {parent['run_id']})")


if __name__ == "__main__":
    run_command(main)
