"""Evaluation: PQ/SQ/RQ, mIoU, AP, export and visualisation. Imports without Ray or MLflow."""
