"""Evaluation: PQ/SQ/RQ, mIoU, AP, export and visualisation. Imports without Ray or MLflow.

    pq_stats      PQAccumulator: panopticapi's PQ, vectorised, in memory
    pq_files      evaluate_pq_files: the same over PNG + JSON folders (CLI: python -m unips.evaluation.pq)
    semantic      ConfusionMatrix: mIoU and stuff IoU
    coco_ap       CocoAP: AP box / AP mask with COCOeval; instances derived from panoptic ground truth
    export        PanopticExporter: predictions as COCO panoptic PNG + JSON; colour pictures
    evaluator     PanopticEvaluator: process(outputs, targets) per batch, evaluate() -> flat metrics
    trim          trim_small_stuff: stuff segments below an area limit become void
    segments      dataset_segments: the post-processor's segments (training ids) in dataset ids

Import from the modules themselves (``from unips.evaluation.evaluator import PanopticEvaluator``):
the package stays light, and ``python -m unips.evaluation.pq`` / ``.coco_ap`` run without re-import.
"""
