"""Anomaly thresholds, flags and metrics: numpy only (base layer).

A sample's anomaly score is its reconstruction error (per-sample MSE in the model's space; a
vae's negative ELBO per sample). The threshold is set once, at the end of training, from the
scores of the training (normal) samples, and travels with the registered models
(`names.ANOMALY_KEY`); a sample is flagged when its score is strictly above it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

QUANTILE = "quantile"  # the (1 - contamination) quantile of the training scores (PyOD's rule)
MEAN_STD = "mean_std"  # mean + one standard deviation (the TensorFlow autoencoder tutorial's rule)
THRESHOLD_RULES = (QUANTILE, MEAN_STD)
DEFAULT_RULE = QUANTILE
# The fraction of training samples allowed above the threshold: small, as the training data is
# meant to be normal; (0, 0.5) exclusive.
DEFAULT_CONTAMINATION = 0.01
CONTAMINATION_RANGE = (0.0, 0.5)


def contamination_ok(contamination: float) -> bool:
    """Whether `contamination` lies strictly inside (0, 0.5)."""
    low, high = CONTAMINATION_RANGE
    return isinstance(contamination, (int, float)) and math.isfinite(contamination) and low < contamination < high


def threshold_from(scores: np.ndarray, rule: str = DEFAULT_RULE,
                   contamination: float = DEFAULT_CONTAMINATION) -> float:
    """The threshold from the training samples' `scores`.

    `quantile`: the (1 - contamination) quantile (linear interpolation), so about `contamination`
    of the training samples score above it; `mean_std`: mean + 1 std (`contamination` unused).
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("threshold_from: no scores; expected at least one training sample")
    if not np.all(np.isfinite(values)):
        raise ValueError("threshold_from: scores hold NaN or infinity; expected finite numbers")
    if rule == QUANTILE:
        if not contamination_ok(contamination):
            raise ValueError(f"contamination {contamination}; expected a number in (0, 0.5)")
        return float(np.quantile(values, 1.0 - contamination))
    if rule == MEAN_STD:
        return float(values.mean() + values.std())
    raise ValueError(f"threshold rule {rule!r}; expected one of {', '.join(THRESHOLD_RULES)}")


def flags(scores: np.ndarray, threshold: float) -> np.ndarray:
    """1 where a score is strictly above `threshold`, else 0: int64, shape (n,)."""
    return (np.asarray(scores, dtype=np.float64).ravel() > float(threshold)).astype(np.int64)


def threshold_metadata(threshold: float, rule: str, contamination: float, score: str) -> dict[str, Any]:
    """What a logged part stores under `names.ANOMALY_KEY`: the threshold on that part's own score
    (`score`: "mse" or "elbo") and how it was set."""
    return {"threshold": float(threshold), "rule": rule, "contamination": float(contamination), "score": score}


@dataclass(frozen=True)
class RunThreshold:
    """A run's anomaly thresholds: on the scorer's score (`score`: "mse", or "elbo" for a vae) and
    on the autoencoder's per-sample MSE (the same number unless the score is "elbo")."""

    scorer: float
    autoencoder: float
    rule: str
    contamination: float
    score: str

    def metadata(self, part: str) -> dict[str, Any]:
        """What logged part `part` stores under `names.ANOMALY_KEY`: the autoencoder its MSE
        threshold, every other part (scorer, encoder, decoder) the scorer's."""
        if part == "autoencoder":
            return threshold_metadata(self.autoencoder, self.rule, self.contamination, "mse")
        return threshold_metadata(self.scorer, self.rule, self.contamination, self.score)


def run_threshold(scorer_scores: np.ndarray, mse_scores: np.ndarray, rule: str, contamination: float,
                  score: str) -> RunThreshold:
    """Both thresholds of a run from its training samples' scorer scores and per-sample MSEs."""
    return RunThreshold(threshold_from(scorer_scores, rule, contamination),
                        threshold_from(mse_scores, rule, contamination), rule, float(contamination), score)


def precision_recall_f1(scores: np.ndarray, anomalous: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """Precision, recall and F1 of flagging `scores > threshold` against the boolean `anomalous`
    (0 where undefined, as scikit-learn's zero_division=0)."""
    predicted = flags(scores, threshold).astype(bool)
    truth = np.asarray(anomalous, dtype=bool).ravel()
    true_pos = int(np.sum(predicted & truth))
    flagged, positives = int(predicted.sum()), int(truth.sum())
    precision = true_pos / flagged if flagged else 0.0
    recall = true_pos / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(precision), float(recall), float(f1)


def best_f1(scores: np.ndarray, anomalous: np.ndarray) -> tuple[float, float]:
    """(best F1, its threshold) over every cut between distinct scores (anomalib's adaptive rule).

    The threshold returned flags with `score > threshold`: it is the largest score left unflagged
    (or just below the smallest score when flagging everything is best).
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    truth = np.asarray(anomalous, dtype=bool).ravel()
    order = np.argsort(-values, kind="stable")
    values, truth = values[order], truth[order]
    positives = truth.sum()
    if positives == 0:
        return 0.0, float(values.max()) if values.size else 0.0
    # Flag the top k samples; only cuts where the next score differs are real thresholds.
    true_pos = np.cumsum(truth)
    k = np.arange(1, len(values) + 1)
    cut = np.r_[values[1:] < values[:-1], True]
    f1 = 2 * true_pos / (k + positives)
    f1 = np.where(cut, f1, -1.0)
    best = int(np.argmax(f1))
    threshold = values[best + 1] if best + 1 < len(values) else np.nextafter(values[-1], -np.inf)
    return float(f1[best]), float(threshold)


def _ranked(scores: np.ndarray, anomalous: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct thresholds high to low, true positives and false positives flagged at `score >=`
    each): the cumulative counts scikit-learn's curves are built from."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    truth = np.asarray(anomalous, dtype=bool).ravel()
    order = np.argsort(-values, kind="stable")
    values, truth = values[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(values)), len(values) - 1]  # the last index of each distinct score
    true_pos = np.cumsum(truth)[last]
    return values[last], true_pos.astype(np.float64), (last + 1 - true_pos).astype(np.float64)


def roc_curve(scores: np.ndarray, anomalous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates), from (0, 0) to (1, 1)."""
    _, true_pos, false_pos = _ranked(scores, anomalous)
    return np.r_[0.0, false_pos / false_pos[-1]], np.r_[0.0, true_pos / true_pos[-1]]


def precision_recall_curve(scores: np.ndarray, anomalous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) at each distinct threshold, high to low (recall rising)."""
    _, true_pos, false_pos = _ranked(scores, anomalous)
    return true_pos / (true_pos + false_pos), true_pos / true_pos[-1]


def average_precision(scores: np.ndarray, anomalous: np.ndarray) -> float:
    """Sum over thresholds of (recall step) x precision: scikit-learn's average_precision_score."""
    precision, recall = precision_recall_curve(scores, anomalous)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(scores: np.ndarray, anomalous: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids; ties count one half): scikit-learn's roc_auc_score."""
    fpr, tpr = roc_curve(scores, anomalous)
    return float(np.trapezoid(tpr, fpr) if hasattr(np, "trapezoid") else np.trapz(tpr, fpr))


def anomaly_metrics(scores: np.ndarray, anomalous: np.ndarray, threshold: float | None) -> dict[str, float]:
    """`anomaly_auc`, `anomaly_ap`, `anomaly_best_f1(_threshold)` and, given the stored
    `threshold`, `anomaly_precision`, `anomaly_recall` and `anomaly_f1` at it.

    Empty when the samples are all normal or all anomalous (no ranking to measure). numpy, not
    scikit-learn: scikit-learn is not among the runtime requirements of a logged model or an
    `mlflow run` environment (tests check these equal scikit-learn's).
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    truth = np.asarray(anomalous, dtype=bool).ravel()
    if values.shape != truth.shape:
        raise ValueError(f"anomaly_metrics: {len(values)} scores but {len(truth)} labels; expected as many")
    if not 0 < truth.sum() < len(truth):
        return {}
    metrics = {"anomaly_auc": roc_auc(values, truth), "anomaly_ap": average_precision(values, truth)}
    if threshold is not None:
        precision, recall, f1 = precision_recall_f1(values, truth, threshold)
        metrics.update(anomaly_precision=precision, anomaly_recall=recall, anomaly_f1=f1)
    metrics["anomaly_best_f1"], metrics["anomaly_best_f1_threshold"] = best_f1(values, truth)
    return metrics
