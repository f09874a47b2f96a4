"""`run_sweep`: an Optuna study whose trials are aetrack runs nested under one parent MLflow run.

Any number of worker processes, on any machines, given the same Optuna storage and study name,
work on one study:
- the parent: the worker that claims it (creates the marker study `<study>.parent`, a unique row
  in the storage, so exactly one does) creates the parent run (or adopts the run `mlflow run`
  made) and stores its id as a study user attribute; the others wait for that attribute and nest
  their trials under it;
- the count: together the workers run `trials` trials; a worker that loses a race for the last
  ones gives its extra trial back (told FAIL, attribute `aetrack.skipped`);
- the end: whichever worker sees all `trials` trials finished claims the study's finalisation by
  creating the marker study `<study>.finalized` (again a unique row: one worker wins), then logs
  the best trial to the parent, draws the figures, registers the best trial's models once and
  ends the parent run;
- a lost worker: each trial beats in the storage (Optuna's RDB heartbeats); a trial with no beat
  for `grace_period` s is failed by a live worker, which runs it again (same parameters) and ends
  its MLflow run FAILED. Lost trials do not count towards `trials`; workers wait for running
  trials before the end, so the study still ends with `trials` trials, finalised once.
Trials run in the worker's own process with `train()`; Keras state is cleared between them.

storage.py opens the study, claims.py holds the marker studies and which trials count,
heartbeat.py the beats and the retries of lost trials, parent.py shares the parent run through
the study, trial.py runs one trial, worker.py is the loop, finalise.py and plots.py the end. All
MLflow I/O is in aetrack.tracking.sweep_runs.
"""

from aetrack.sweep.result import SweepError, SweepResult
from aetrack.sweep.storage import default_storage, redacted
from aetrack.sweep.trial import TrialPruning
from aetrack.sweep.worker import run_sweep
from aetrack.tracking.sweep_runs import register_trial_models

__all__ = ["SweepError", "SweepResult", "TrialPruning", "default_storage", "redacted", "register_trial_models",
           "run_sweep"]
