"""One line per finished trial of a study, in place of Ray Tune's periodic status table.

    trial msk1-aff1-e2e1-B-pred-3f9a0c21-s0 finished in 3 min 12 s (2/4 done, 2 running, 0 pending)
    trial msk0-aff1-e2e1-B-pred-0c4e19aa-s1 failed after 41 s (2/4 done, 1 failed, 1 running, 0 pending)

A study's trials take minutes to hours each; between them the training workers print their
step lines (through the driver), and this line says what has ended and what is left.
:func:`tune_output` sets a new study's output, :func:`restore_output` a resumed one's.
"""

from __future__ import annotations

import time
from typing import Any

from ray import tune
from ray.tune import Callback
from ray.tune.experiment import Trial

from unips.progress import duration


def remaining(trials: list[Any], ended: Any, failed: bool, total: int) -> str:
    """``2/4 done, 1 failed, 2 running, 0 pending``, with ``ended`` counted as done (or as failed).

    ``total`` is the study's trial count: Tune creates trials as it schedules them, so ``trials``
    may not hold the pending ones yet. The other trials count by their status.
    """
    others = [trial for trial in trials if trial is not ended]
    done = sum(trial.status == Trial.TERMINATED for trial in others) + (not failed)
    errored = sum(trial.status == Trial.ERROR for trial in others) + failed
    running = sum(trial.status == Trial.RUNNING for trial in others)
    total = max(total, len(trials))
    counts = f"{done}/{total} done" + (f", {errored} failed" if errored else "")
    return f"{counts}, {running} running, {total - done - errored - running} pending"


class TrialLines(Callback):
    """A Tune callback that prints the line of the module docstring when a trial finishes or fails.

    The wall time runs from the trial's start in this process (a resumed trial: from its restart)
    to its end, the read-out of the trained model included.
    """

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.total = 0

    def setup(self, total_num_samples: int | None = None, **info: Any) -> None:
        self.total = total_num_samples or 0

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.started[trial.trial_id] = time.monotonic()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        # Tune calls this while the trial is still RUNNING, hence the explicit `failed`.
        print(self.line(trial, trials, failed=False), flush=True)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        print(self.line(trial, trials, failed=True), flush=True)

    def line(self, trial: Any, trials: list[Any], failed: bool) -> str:
        """``trial <name> finished in <duration> (<what remains>)``, or ``failed after``."""
        start = self.started.pop(trial.trial_id, None)
        # Tune's own clock of the trainable, should its start have gone unseen.
        took = time.monotonic() - start if start is not None else (trial.last_result or {}).get("time_total_s")
        verb = "failed after" if failed else "finished in"
        return (f"trial {trial} {verb} {duration(took) if took is not None else 'an unknown time'} "
                f"({remaining(trials, trial, failed, self.total)})")


def tune_output(verbose: bool) -> dict[str, Any]:
    """``tune.RunConfig``'s output settings: our lines, and Tune's own output only when ``verbose``.

    In Ray 2.60 (its new output engine, ``RAY_AIR_NEW_OUTPUT`` unset) ``verbose=0`` drops the status
    table Tune prints every 30 s and its per-trial start and end blocks; what is left is its header
    (``Configuration for experiment``, ``View detailed results here``) and its report of a failed trial.
    ``verbose=1`` is Tune's default. ``TrialLines`` is pickled into the study's ``tuner.pkl`` with the
    rest of the RunConfig: renaming it would keep a study begun before from resuming.
    """
    return {"verbose": 1 if verbose else 0, "callbacks": [TrialLines()]}


def restore_output(tuner: tune.Tuner, verbose: bool) -> None:
    """:func:`tune_output` for a tuner from ``Tuner.restore``, which takes no RunConfig in Ray 2.60.

    ``Tuner.restore`` unpickles the RunConfig the study began with (its verbosity, and its callbacks:
    none for a study begun before these lines); this run's ``--verbose`` replaces them. The RunConfig
    is reached through the Tuner's private ``_local_tuner``; under Ray Client (a ``ray://`` address)
    there is none and the recorded settings stay.
    """
    internal = getattr(tuner, "_local_tuner", None)
    if internal is None:
        return
    run_config = internal.get_run_config()
    output = tune_output(verbose)
    run_config.verbose = output["verbose"]
    kept = [callback for callback in run_config.callbacks or [] if not isinstance(callback, TrialLines)]
    run_config.callbacks = [*kept, *output["callbacks"]]
