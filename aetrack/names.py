"""Every name aetrack writes into MLflow and Optuna, said once: run tags, study attributes, the
registered parts, and which metrics a run logs.

Standard library only: the CLI checks `--metric` against these before anything heavy loads.
`evaluation.py` computes the final metrics under these names; the sweep, `compare` and the
registry ask this module which ones exist.
"""

from __future__ import annotations

import re

# --- run tags ----------------------------------------------------------------------------------
ENTRY_POINT_TAG = "aetrack.entry_point"
ARCHITECTURE_TAG = "aetrack.architecture"
# A custom architecture's run: the callable that built the models, its source file and that file's
# SHA-256 (resume refuses a changed source).
CALLABLE_TAG = "aetrack.custom_callable"
SOURCE_TAG = "aetrack.custom_source"
SOURCE_SHA256_TAG = "aetrack.custom_source_sha256"
# MLmodel metadata: the modules shipped in a logged model's code/ folder that define its registered
# custom layers; importing them registers the classes, so the .keras file loads without the source.
CODE_METADATA = "aetrack.custom_code"
DATASET_TAG = "aetrack.dataset"
DATASET_SHA256_TAG = "aetrack.dataset_sha256"
TRAIN_IMAGES_TAG = "aetrack.train_images"
TEST_IMAGES_TAG = "aetrack.test_images"
DATA_KIND_TAG = "aetrack.data_kind"  # what a sample is: "image" or "table" (SampleSpec.kind)
SAMPLE_SHAPE_TAG = "aetrack.sample_shape"  # one sample's shape, e.g. 28x28x1 or 30 (SampleSpec.shape_text)
SAMPLE_SPEC_ARTIFACT = "sample_spec.json"  # the run's whole SampleSpec (SampleSpec.to_json), at the artifact root
STRATEGY_TAG = "aetrack.strategy"
DEVICES_TAG = "aetrack.devices"  # the devices a run (or its resumption) trained on, comma-separated
# The value fit used: under `mlflow run` the param keeps what was asked (MLflow logged it first).
STEPS_PER_EXECUTION_TAG = "aetrack.steps_per_execution_used"
VERSION_TAG = "aetrack.version"
FAILURE_TAG = "aetrack.failure"  # why a run ended FAILED or KILLED
CODES_WHITE_TAG = "aetrack.latent_codes_white"  # the code value drawn white in `latent_codes` images
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"  # the description the UI shows on a run's page and a logged model's page
# On a logged model: the registered versions made from it, JSON [{"name": ..., "version": ...}], as
# `mlflow.register_model` records it; the UI's logged model page and Models list read it.
MODEL_VERSIONS_TAG = "mlflow.modelVersions"

# Liveness: who trains the run now (see tracking/liveness.py).
HEARTBEAT_TAG = "aetrack.heartbeat"
HOST_TAG = "aetrack.host"
PID_TAG = "aetrack.pid"
PID_START_TAG = "aetrack.pid_start"  # the process's start time (Linux clock ticks): a reused pid differs
CLAIM_PREFIX = "aetrack.resume."  # params aetrack.resume.<n> = "<host> <pid> <pid start> <utc>", one per resume

# Resume.
RESUMED_FROM_TAG = "aetrack.resumed_from_epoch"
RESUMED_BY_TAG = "aetrack.resumed_by"  # on the resumed run: the `mlflow run` run that resumed it
RESUMES_TAG = "aetrack.resumes"  # on that `mlflow run` run: the run it resumed

# Sweeps: tags on the parent and trial runs.
SWEEP_TAG = "aetrack.sweep"  # "parent" or "trial"
SWEEP_STUDY_TAG = "aetrack.sweep.study"
SWEEP_TRIAL_TAG = "aetrack.sweep.trial"
SWEEP_WORKER_TAG = "aetrack.sweep.worker"
SWEEP_BEST_RUN_TAG = "aetrack.sweep.best_run_id"
SWEEP_BEST_TRIAL_TAG = "aetrack.sweep.best_trial"
SWEEP_NO_FIGURE_PREFIX = "aetrack.sweep.no_"  # + figure name: why that figure could not be drawn
PRUNED_TAG = "aetrack.pruned"
PRUNED_EPOCH_TAG = "aetrack.pruned_at_epoch"
SWEEP_RETRY_OF_TAG = "aetrack.sweep.retry_of"  # on a retried trial's run: the lost trial it runs again

# Sweeps: Optuna study and trial user attributes.
PARENT_ATTR = "aetrack.parent_run_id"
SPACE_ATTR = "aetrack.search"
METRIC_ATTR = "aetrack.metric"
TRIALS_ATTR = "aetrack.trials"
SAMPLE_SHAPE_ATTR = "aetrack.sample_shape"  # the study's data: every worker must train on samples of this shape
RUN_ID_ATTR = "aetrack.run_id"
SKIPPED_ATTR = "aetrack.skipped"
TRIAL_FAILURE_ATTR = "aetrack.failure"
RETRY_OF_ATTR = "aetrack.retry_of"  # on a retried trial: the number of the lost trial it runs again
# Set when a trial ends; a retry does not inherit them. A FAIL trial with neither of the first two
# was lost (its worker stopped beating or was interrupted) and does not count towards `trials`.
OUTCOME_ATTRS = (TRIAL_FAILURE_ATTR, SKIPPED_ATTR, RUN_ID_ATTR)

# --- registered models ---------------------------------------------------------------------------
SCORER = "scorer"  # samples in, one anomaly score per sample out (models/scorer.py)
PARTS = ("autoencoder", "encoder", "decoder", SCORER)
PART_METADATA = "aetrack.part"
CANDIDATE = "candidate"
CHAMPION = "champion"
COMPARED_METRIC = "test_bce"  # what `promote --if-better` compares; lower is better
# Logged-model metadata key holding `SampleSpec.to_dict()`: what one sample of the model's input is.
SAMPLE_SPEC_KEY = "aetrack.sample_spec"
# Logged-model params and registered-version tags: the data kind (image|table) and the sample shape
# as `SampleSpec.shape_text()` (`28x28x1`, `30`).
DATA_KIND = "data_kind"
SAMPLE_SHAPE = "sample_shape"
# Logged-model metadata key on every part when the run set an anomaly threshold: {"threshold": float,
# "rule": str, "contamination": float, "score": "mse" | "elbo"}; the threshold is on that part's own
# score (the autoencoder's: per-sample MSE in the model's space; a vae's scorer: negative ELBO).
ANOMALY_KEY = "aetrack.anomaly"
# Registered-version tag and logged-model param: the scorer's threshold (as `str(float)`).
ANOMALY_THRESHOLD = "anomaly_threshold"
SWEEP_STUDY_VERSION_TAG = "sweep_study"  # on a version registered from a sweep: the study of its best trial

# --- metrics -------------------------------------------------------------------------------------
NOISE_LEVELS = (0.2, 0.4, 0.6)  # the denoising robustness metrics and figure

# Logged every epoch by every run (tracking/callbacks.py), plus what the model reports to Keras.
TIMING_METRICS = ("epoch_seconds", "samples_per_second")
LOSS_METRICS = ("loss", "val_loss")
# What a vae's training wrapper reports besides `loss` (models/vae.py), with its `val_` versions.
VAE_LOSS_PARTS = ("reconstruction_loss", "kl_loss")


def epoch_metric_names(architecture: str) -> tuple[str, ...]:
    """The metrics a run of `architecture` logs every epoch (steps 1..epochs)."""
    names = [*LOSS_METRICS, *TIMING_METRICS]
    if architecture == "vae":
        names += [*VAE_LOSS_PARTS, *(f"val_{name}" for name in VAE_LOSS_PARTS)]
    return tuple(names)


def noise_level_metric(level: float, measure: str = "psnr") -> str:
    """`test_psnr_noise_<level>` for images; tables measure `mse` (no PSNR for unbounded data)."""
    return f"test_{measure}_noise_{level:g}"


def digit_error_metric(digit: int) -> str:
    return f"test_mse_digit_{digit}"


def compared_metric(bounded: bool = True) -> str:
    """What `promote --if-better` compares: `test_bce` where the data is bounded, else `test_mse`."""
    return COMPARED_METRIC if bounded else "test_mse"


# Tables: each of the worst few features' own error, `test_mse.<feature>` (worst first by value).
WORST_FEATURES = 3
_METRIC_NAME_OK = re.compile(r"[^A-Za-z0-9_\-. /]")


def feature_error_metric(feature: str) -> str:
    """`test_mse.<feature>`, the feature name made valid in MLflow (other characters become `_`)."""
    return f"test_mse.{_METRIC_NAME_OK.sub('_', feature).strip() or '_'}"


def final_metric_names(entry_point: str, architecture: str, excludes_labels: bool, kind: str = "image",
                       bounded: bool = True) -> tuple[str, ...]:
    """The metrics every such run logs once at the end (evaluation.py), in a stable order.

    `kind` is the data's (`image` or `table`); `bounded` whether its values lie in a fixed range
    (bce exists only then). Per-digit errors (`test_mse_digit_<d>`) and a table's worst features
    (`test_mse.<feature>`) are left out: which ones appear depends on the data.
    """
    image = kind == "image"
    names = ["test_bce"] if bounded else []
    names += ["test_mse", "test_psnr", "test_ssim"] if image else ["test_mse", "test_mae"]
    if architecture == "vae" and bounded:
        names.append("test_elbo")
    if entry_point == "denoise":
        if image:
            names += ["noisy_psnr", "noisy_ssim", "psnr_gain_db", *(noise_level_metric(f) for f in NOISE_LEVELS)]
        else:
            names += ["noisy_mse", *(noise_level_metric(f, "mse") for f in NOISE_LEVELS)]
    if excludes_labels:
        names += list(ANOMALY_METRICS)
    return tuple(names)


# Logged when the test split has labels and normal ones (normal_labels, or all but exclude_labels)
# beside anomalous ones; `anomaly_threshold` (metric) is logged by every run that set a threshold.
ANOMALY_METRICS = ("anomaly_auc", "anomaly_ap", "anomaly_precision", "anomaly_recall", "anomaly_f1",
                   "anomaly_best_f1", "anomaly_best_f1_threshold")


# The final metrics `aetrack compare` shows as columns when any compared run has them.
SUMMARY_METRICS = (
    "test_bce", "test_mse", "test_mae", "test_psnr", "test_ssim", "psnr_gain_db", "test_elbo", "anomaly_auc",
    "anomaly_ap", "anomaly_f1")

# Metrics where a larger value is the better run; every other metric (losses, errors, seconds) is
# ranked lower-is-better.
_HIGHER_IS_BETTER = ("psnr", "ssim", "auc", "gain", "per_second")
# Anomaly detection quality: larger is better. Thresholds (`anomaly_threshold`,
# `anomaly_best_f1_threshold`) are positions on a score scale, never "better": lower-is-better by
# the default, and no sweep should rank by them.
_HIGHER_IS_BETTER_EXACT = ("anomaly_ap", "anomaly_precision", "anomaly_recall", "anomaly_f1", "anomaly_best_f1")


def higher_is_better(metric: str) -> bool:
    if metric.endswith("threshold"):
        return False
    return metric in _HIGHER_IS_BETTER_EXACT or any(word in metric for word in _HIGHER_IS_BETTER)
