"""Regenerate the paper's tables from a study's MLflow runs.

    python experiments/tables.py --study smoke-study-20261126-101500
    python experiments/tables.py --study latest      # the newest study in ./mlflow.db
    python experiments/tables.py --study NAME --format latex --out outputs/tables --tracking-uri http://head:5000

Writes ``table_<key>.<md|tex|csv>`` for every table of the study into ``--out`` (our
numbers, mean ± std over seeds, and the paper's figures beside them) with ``study.png`` (each
row's PQ with its seed interval, the paper's differences beside ours), logs the tables in every
format and the figure to the study's parent run (``tables/``, ``figures/study.png``; the study
does this itself when it finishes), and prints the Markdown tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from unips.commands import add_workdir_argument, enter_workdir, run_command
from unips.platform.study_report import FIGURE, log_study_report, study_tables
from unips.platform.tables import to_markdown, write_tables
from unips.platform.tracking import require_store, resolve_tracking_uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True,
                        help="the name experiments/ablation.py printed (study=...), or 'latest' for the newest study")
    parser.add_argument("--format", choices=["md", "latex", "csv"], default="md")
    parser.add_argument("--out", type=Path, default=Path("outputs/tables"), help="folder for the table files")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    add_workdir_argument(parser)
    args = parser.parse_args()
    enter_workdir(args.workdir)

    uri = resolve_tracking_uri(args.tracking_uri, None, Path.cwd())
    require_store(uri, "", "the study")
    tables, seeds, parent = study_tables(args.study, uri)
    written = write_tables(tables, args.out, args.format, seeds)
    log_study_report(tables, seeds, parent, uri, out=args.out)
    for table in tables:
        print(to_markdown(table, seeds))
    print(f"wrote {len(written)} file(s) and study.png to {args.out}; the tables in every format and the figure "
          f"are artifacts of study run {parent} (tables/, {FIGURE})")


if __name__ == "__main__":
    run_command(main)
