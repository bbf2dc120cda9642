"""The study's line per finished trial, and Tune's quiet output on a new and on a restored study.

The lines as a real study prints them are checked in ``test_ablation.py`` (the killed-and-resumed study)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from ray import tune

from unips.platform import study_progress
from unips.platform.study_progress import TrialLines, restore_output, tune_output
from unips.progress import duration


@dataclass
class FakeTrial:
    """What the callback reads of a Tune trial: its id, status, name and last result."""

    trial_id: str
    status: str
    last_result: dict | None = None

    def __str__(self) -> str:
        return f"msk1-aff1-e2e1-B-pred-3f9a0c21-s{self.trial_id}"


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0 s"), (41.2, "41 s"), (59.6, "1 min 0 s"), (192, "3 min 12 s"),
                                               (7500, "2 h 05 min")])
def test_durations_read_as_a_person_says_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_a_line_per_finished_or_failed_trial_with_what_remains(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    clock = iter([100.0, 110.0, 292.0, 151.0])  # two starts, then the two ends
    monkeypatch.setattr(study_progress.time, "monotonic", lambda: next(clock))
    lines = TrialLines()
    lines.setup(stop=None, num_samples=1, total_num_samples=4)  # as Tune calls it
    first, second = FakeTrial("0", "PENDING"), FakeTrial("1", "PENDING")
    lines.on_trial_start(iteration=1, trials=[first], trial=first)
    lines.on_trial_start(iteration=2, trials=[first, second], trial=second)
    first.status = second.status = "RUNNING"
    # Tune calls on_trial_complete while the trial is still RUNNING, and on_trial_error once it is ERROR;
    # the fourth trial is not created yet.
    third = FakeTrial("2", "PENDING")
    lines.on_trial_complete(iteration=3, trials=[first, second, third], trial=first)
    first.status, second.status = "TERMINATED", "ERROR"
    lines.on_trial_error(iteration=4, trials=[first, second, third], trial=second)
    assert capsys.readouterr().out.splitlines() == [
        "trial msk1-aff1-e2e1-B-pred-3f9a0c21-s0 finished in 3 min 12 s (1/4 done, 1 running, 2 pending)",
        "trial msk1-aff1-e2e1-B-pred-3f9a0c21-s1 failed after 41 s (1/4 done, 1 failed, 0 running, 2 pending)",
    ]


def test_an_unseen_start_takes_tunes_own_clock(capsys: pytest.CaptureFixture[str]) -> None:
    lines = TrialLines()
    trial = FakeTrial("0", "RUNNING", {"time_total_s": 65.0})
    lines.on_trial_complete(iteration=1, trials=[trial], trial=trial)
    assert capsys.readouterr().out == "trial msk1-aff1-e2e1-B-pred-3f9a0c21-s0 finished in 1 min 5 s " \
                                      "(1/1 done, 0 running, 0 pending)\n"


def test_a_restored_study_takes_this_runs_verbosity_and_callbacks(tmp_path: Path) -> None:
    """``Tuner.restore`` unpickles the RunConfig the study began with; ``restore_output`` replaces its output.
    Neither makes nor restores a tuner that needs Ray running."""
    def trainable(config: dict) -> None:
        pass

    tune.Tuner(trainable, param_space={"x": tune.grid_search([0, 1])},
               run_config=tune.RunConfig(name="study", storage_path=str(tmp_path), **tune_output(verbose=True)))
    tuner = tune.Tuner.restore(str(tmp_path / "study"), trainable=trainable)
    recorded = tuner._local_tuner.get_run_config()
    assert recorded.verbose == 1 and [type(c) for c in recorded.callbacks] == [TrialLines]
    restore_output(tuner, verbose=False)
    run_config = tuner._local_tuner.get_run_config()
    assert run_config.verbose == 0 and [type(c) for c in run_config.callbacks] == [TrialLines]  # not two
