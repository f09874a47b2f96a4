"""End-of-run anomaly figures, under `figures/` beside plots.py's (no pyplot: figures.new_figure),
for runs that say which test samples are anomalies (normal_labels or exclude_labels, on labelled
test data); other runs skip them (each figure costs every run time, and without labels the
threshold's own figure says little):

- anomaly_scores.png: histograms of the test samples' scores, normal and anomalous apart when the
  test split says which are which, with the stored threshold drawn;
- anomaly_roc.png and anomaly_pr.png: ROC and precision-recall curves (only with both kinds);
- anomaly_worst.png: the worst-scored test samples over their reconstructions (an image grid, or
  a heat map of table rows: plots.reconstructions_figure).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from aetrack.anomaly import RunThreshold, anomaly_metrics, precision_recall_curve, roc_curve
from aetrack.figures import new_figure
from aetrack.tracking.plots import log_figures, reconstructions_figure

WORST_SAMPLES = 10
HISTOGRAM_BINS = 40


def scores_figure(scores: np.ndarray, anomalous: np.ndarray | None, threshold: float, score: str) -> Figure:
    """Score histograms (normal vs anomalous, or all test samples) with the threshold line."""
    figure = new_figure(6.5, 4.0)
    ax = figure.subplots()
    bins = np.histogram_bin_edges(np.r_[scores, threshold], bins=HISTOGRAM_BINS)
    if anomalous is None:
        ax.hist(scores, bins=bins, alpha=0.7, color="C0", label=f"test samples ({len(scores)})")
    else:
        ax.hist(scores[~anomalous], bins=bins, alpha=0.6, color="C0", label=f"normal ({int((~anomalous).sum())})")
        ax.hist(scores[anomalous], bins=bins, alpha=0.6, color="C3", label=f"anomalous ({int(anomalous.sum())})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel(f"anomaly score ({'negative ELBO, nats' if score == 'elbo' else 'per-sample mse'})")
    ax.set_ylabel("test samples")
    ax.set_title("Anomaly scores of the test samples")
    ax.legend()
    figure.tight_layout()
    return figure


def roc_figure(scores: np.ndarray, anomalous: np.ndarray) -> Figure:
    fpr, tpr = roc_curve(scores, anomalous)
    auc = anomaly_metrics(scores, anomalous, None)["anomaly_auc"]
    figure = new_figure(5.0, 5.0)
    ax = figure.subplots()
    ax.plot(fpr, tpr, color="C0", label=f"AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set_xlabel("false positive rate (normal flagged)")
    ax.set_ylabel("true positive rate (anomalies flagged)")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right")
    figure.tight_layout()
    return figure


def pr_figure(scores: np.ndarray, anomalous: np.ndarray, threshold: float) -> Figure:
    precision, recall = precision_recall_curve(scores, anomalous)
    metrics = anomaly_metrics(scores, anomalous, threshold)
    figure = new_figure(5.0, 5.0)
    ax = figure.subplots()
    ax.plot(np.r_[0.0, recall], np.r_[precision[0], precision], color="C0", label=f"AP {metrics['anomaly_ap']:.3f}")
    ax.axhline(anomalous.mean(), color="grey", linestyle=":", label="chance")
    ax.scatter([metrics["anomaly_recall"]], [metrics["anomaly_precision"]], color="black", zorder=3,
               label=f"stored threshold (F1 {metrics['anomaly_f1']:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall curve")
    ax.legend(loc="lower left")
    figure.tight_layout()
    return figure


def worst_figure(model, samples: np.ndarray, scores: np.ndarray, spec, count: int = WORST_SAMPLES) -> Figure:
    """The `count` highest-scored samples (worst first) over their reconstructions."""
    worst = np.argsort(-scores, kind="stable")[:count]
    reconstructed = model(samples[worst], training=False).numpy()
    return reconstructions_figure([("worst scored", samples[worst]), ("reconstructed", reconstructed)],
                                  per_row=count, spec=spec)


def log_anomaly_figures(client, run_id: str, model, dataset, scores: np.ndarray,
                        anomalous: np.ndarray | None, threshold: RunThreshold) -> list[str]:
    """Log the figures above for the test split's `scores`; return their artifact paths (none
    when `anomalous` is None)."""
    if anomalous is None:
        return []
    figures = {"anomaly_scores.png": scores_figure(scores, anomalous, threshold.scorer, threshold.score),
               "anomaly_worst.png": worst_figure(model, dataset.x_test, scores, dataset.spec)}
    if 0 < anomalous.sum() < len(anomalous):
        figures["anomaly_roc.png"] = roc_figure(scores, anomalous)
        figures["anomaly_pr.png"] = pr_figure(scores, anomalous, threshold.scorer)
    return log_figures(client, run_id, figures)
