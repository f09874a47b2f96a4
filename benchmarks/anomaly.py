"""Anomaly detection measured against a paper's table and the detectors people use, in one run.

    python benchmarks/anomaly.py --tiny                  # a smoke run: two digits, tiny data, 1 epoch
    python benchmarks/anomaly.py --out anomaly.md        # the full protocol (about 30 min on 2 cores)
    python benchmarks/anomaly.py --parts table           # only the breast cancer table

(1) One-class MNIST (Ruff et al. 2018, "Deep One-Class Classification", ICML): for each digit,
aetrack trains on that digit's training images only (`normal_labels=<d>`; on a checkout without
it, `exclude_labels` with the other nine digits, the same filter) and every test image is scored
through `aetrack score`'s own code (`aetrack.use.score_samples` on the logged `scorer`, or the
`autoencoder`'s MSE for runs that log no scorer); that digit is normal, the nine others anomalous.
A vae's scorer gives its negative ELBO; the same runs are also scored by that ELBO minus each
image's own Bernoulli entropy (the least cross-entropy any reconstruction of it can have) and by
their autoencoder's per-image MSE, to show what the score choice costs.
ROC AUC per digit and the mean, for `dense`, `conv` and `vae`, and on the same pixels (x / 255)
scikit-learn's IsolationForest and the reconstruction error of a 32-component PCA (a linear
autoencoder), beside the paper's Deep SVDD row (published, under global contrast normalisation:
not measured here).

(2) scikit-learn's breast cancer table (569 x 30): benign normal, malignant anomalous; a seeded
stratified 70/30 split, training on the benign rows of the 70 % and testing on the held-out 30 %
(benign and malignant). The split is written as a table folder (`train.csv`, `test.csv`, label
column `diagnosis`) that aetrack's data loader reads. AUC, average precision and F1 at each
detector's own threshold: aetrack's stored one (the run's `anomaly_threshold`), sklearn's
`predict` (IsolationForest, LocalOutlierFactor(novelty=True), OneClassSVM) and the 95th
percentile of the training errors for PCA.

(3) Seconds per run (training and scoring) for every row. Output: markdown tables on stdout and
in `--out`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import time
from pathlib import Path

import numpy as np

import harness

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per scored model otherwise

DEEP_SVDD = (98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5)  # Ruff et al. 2018, Table 1, mean 94.8
LABEL = "diagnosis"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(harness.DEFAULT_DATA), help="Keras-layout mnist.npz")
    p.add_argument("--parts", nargs="+", default=["mnist", "table"], choices=["mnist", "table"])
    p.add_argument("--digits", nargs="+", type=int, default=list(range(10)))
    p.add_argument("--architectures", nargs="+", default=["dense", "conv", "vae"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--loss", default="", choices=["", "bce", "mse"], help="training loss (empty: the run's default)")
    p.add_argument("--code-size", type=int, default=32)
    p.add_argument("--train-samples", type=int, default=0,
                   help="per digit, the first N (0: all of the digit's, 5,421-6,742)")
    p.add_argument("--test-images", type=int, default=10000, help="test images scored (the protocol: all 10000)")
    p.add_argument("--table-epochs", type=int, default=20)
    p.add_argument("--table-code-size", type=int, default=8)
    p.add_argument("--contamination", type=float, default=0.05, help="passed to training when it takes one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="keep the tracking store and tables here (default: a temp dir)")
    p.add_argument("--out", default=None, help="also write the markdown here")
    p.add_argument("--tiny", action="store_true", help="smoke: digits 0 and 1, 100 training images, 300 test "
                   "images, 1 epoch; the table with 5 epochs")
    args = p.parse_args(argv)
    if args.tiny:
        args.digits, args.train_samples, args.test_images, args.epochs = args.digits[:2], 100, 300, 1
        args.table_epochs = 5
    return args


def _config_fields() -> set[str]:
    from aetrack.config import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)}


def train_run(**values):
    """aetrack's real `train` (models logged, not registered, no per-epoch images or checkpoints);
    (TrainResult, seconds). Parameters the checkout lacks (contamination) are left out."""
    from aetrack.config import TrainConfig
    from aetrack.train import train

    known = _config_fields()
    values = {k: v for k, v in values.items() if k in known}
    config = TrainConfig(register=False, image_every=0, checkpoint_every=0, **values)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = train(config)
    return result, time.perf_counter() - start


def score_run(run_id: str, inputs: str, workdir: Path, parts=("scorer", "autoencoder")):
    """`aetrack score`'s scores of `inputs` with the run's logged scorer (else its autoencoder):
    (scores, threshold or None, part used, seconds)."""
    from aetrack.errors import ModelError
    from aetrack.use import score_samples

    start = time.perf_counter()
    for part in parts:
        try:
            scored = score_samples(f"runs:/{run_id}/{part}", [inputs], str(workdir / f"{run_id}-{part}.npy"))
        except ModelError:
            continue  # a checkout whose runs log no scorer
        threshold = None if scored.threshold is None else scored.threshold.value
        return scored.scores, threshold, part, time.perf_counter() - start
    raise RuntimeError(f"run {run_id} logged neither a scorer nor an autoencoder")


def pca_errors(train: np.ndarray, test: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """Squared reconstruction error per row of a PCA fitted on `train`: (train errors, test errors)."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(components, *train.shape), random_state=0).fit(train)

    def errors(x):
        return np.mean((x - pca.inverse_transform(pca.transform(x))) ** 2, axis=1)

    return errors(train), errors(test)


def bernoulli_entropy(pixels: np.ndarray) -> np.ndarray:
    """Per row, the sum over values in [0, 1] of -(x log x + (1 - x) log(1 - x)), in nats: the
    least binary cross-entropy any reconstruction of that row can have."""
    x = np.clip(pixels.astype(np.float64), 1e-7, 1 - 1e-7)
    return -(x * np.log(x) + (1 - x) * np.log1p(-x)).sum(axis=1)


def timed(call):
    start = time.perf_counter()
    value = call()
    return value, time.perf_counter() - start


# ----------------------------------------------------------------------------------------- MNIST
def one_class_mnist(args, workdir: Path) -> list[str]:
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    with np.load(args.data) as data:
        x_train, y_train = data["x_train"], data["y_train"]
        x_test, y_test = data["x_test"][: args.test_images], data["y_test"][: args.test_images]
    test_path = workdir / "mnist-test.npy"
    np.save(test_path, x_test)
    pixels_test = x_test.reshape(len(x_test), -1).astype(np.float32) / 255.0
    entropy_test = bernoulli_entropy(pixels_test)
    one_class = "normal_labels" in _config_fields()
    rows: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    used: dict[str, str] = {}
    for digit in args.digits:
        anomalous = (y_test != digit).astype(int)
        for arch in args.architectures:
            filters = ({"normal_labels": str(digit)} if one_class else
                       {"exclude_labels": ",".join(str(d) for d in range(10) if d != digit)})
            result, fit_s = train_run(dataset=args.data, architecture=arch, epochs=args.epochs,
                                      code_size=args.code_size, train_samples=args.train_samples,
                                      test_samples=min(500, args.test_images), seed=args.seed,
                                      contamination=args.contamination, loss=args.loss, **filters)
            scores, _, part, score_s = score_run(result.run_id, str(test_path), workdir)
            rows.setdefault(arch, []).append(100 * roc_auc_score(anomalous, scores))
            seconds.setdefault(arch, []).append(fit_s + score_s)
            used[arch] = f"aetrack {arch} ({part}{', negative ELBO' if arch == 'vae' and part == 'scorer' else ''})"
            if arch == "vae" and part == "scorer":
                # The ELBO's Bernoulli term is at least each pixel's own entropy (reached when the
                # reconstruction is exact): without that floor it is the reconstruction's excess.
                name = "vae-floor"
                rows.setdefault(name, []).append(100 * roc_auc_score(anomalous, scores - entropy_test))
                seconds.setdefault(name, []).append(fit_s + score_s)
                used[name] = "aetrack vae, the same runs (negative ELBO minus the pixels' own entropy)"
                # ...and scored by reconstruction alone.
                mse, _, _, mse_s = score_run(result.run_id, str(test_path), workdir, parts=("autoencoder",))
                name = "vae-mse"
                rows.setdefault(name, []).append(100 * roc_auc_score(anomalous, mse))
                seconds.setdefault(name, []).append(fit_s + mse_s)
                used[name] = "aetrack vae, the same runs (autoencoder, per-image MSE)"
        normal = x_train[y_train == digit][: args.train_samples or None].reshape(-1, 784).astype(np.float32) / 255.0
        forest, fit_s = timed(lambda: IsolationForest(random_state=args.seed).fit(normal))
        forest_scores, score_s = timed(lambda: -forest.score_samples(pixels_test))
        rows.setdefault("IsolationForest", []).append(100 * roc_auc_score(anomalous, forest_scores))
        seconds.setdefault("IsolationForest", []).append(fit_s + score_s)
        (_, errors), pca_s = timed(lambda: pca_errors(normal, pixels_test, 32))
        rows.setdefault("PCA-32 error", []).append(100 * roc_auc_score(anomalous, errors))
        seconds.setdefault("PCA-32 error", []).append(pca_s)
        print(f"digit {digit}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rows.items()), flush=True)

    head = "| detector | " + " | ".join(str(d) for d in args.digits) + " | mean | s per digit |"
    lines = ["### One-class MNIST: ROC AUC (%) per normal digit", "",
             f"{len(x_test)} test images; aetrack: {args.epochs} epochs, code size {args.code_size}, "
             f"loss {args.loss or 'bce (the default for pixels)'}, "
             f"{f'at most {args.train_samples}' if args.train_samples else 'all'} training images of the digit "
             f"({'normal_labels' if one_class else 'exclude_labels with the other nine'}); pixels / 255.", "",
             head, "|" + "---|" * (len(args.digits) + 3)]
    for name, values in rows.items():
        label = used.get(name, name)
        lines.append(f"| {label} | " + " | ".join(f"{v:.1f}" for v in values) +
                     f" | **{np.mean(values):.1f}** | {np.mean(seconds[name]):.1f} |")
    svdd = [DEEP_SVDD[d] for d in args.digits]
    lines.append("| Deep SVDD, one-class (Ruff et al. 2018, published; GCN preprocessing) | " +
                 " | ".join(f"{v:.1f}" for v in svdd) + f" | {np.mean(svdd):.1f} | - |")
    return lines


# ----------------------------------------------------------------------------------- breast cancer
def write_breast_cancer(folder: Path, seed: int):
    """The split as a table folder aetrack reads (train.csv: the 70 %, test.csv: the held-out 30 %,
    label column `diagnosis`; the loader wants every test label among the training ones, so training
    keeps only the benign rows by label) and `benign.csv` (the benign training rows, for training
    scores); returns (benign training rows, test rows, test anomalous 0/1) as arrays."""
    import pandas as pd
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    diagnosis = np.where(data.target == 1, "benign", "malignant")  # sklearn: 1 = benign
    x_tr, x_te, d_tr, d_te = train_test_split(data.data, diagnosis, test_size=0.3, random_state=seed,
                                              stratify=diagnosis)
    folder.mkdir(parents=True, exist_ok=True)
    benign = d_tr == "benign"
    for split, x, d in (("train", x_tr, d_tr), ("test", x_te, d_te), ("benign", x_tr[benign], d_tr[benign])):
        frame = pd.DataFrame(x, columns=names)
        frame[LABEL] = d
        frame.to_csv(folder / f"{split}.csv", index=False)
    return x_tr[benign], x_te, (d_te == "malignant").astype(int)


def breast_cancer(args, workdir: Path) -> list[str]:
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score
    from sklearn.neighbors import LocalOutlierFactor
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import OneClassSVM

    folder = workdir / "breast_cancer"
    x_train, x_test, anomalous = write_breast_cancer(folder, args.seed)
    results = []  # (name, scores, flags, threshold rule, seconds)

    one_class = {"normal_labels": "benign"} if "normal_labels" in _config_fields() else {"exclude_labels": "malignant"}
    result, fit_s = train_run(dataset=str(folder), label_column=LABEL, architecture="dense", **one_class,
                              epochs=args.table_epochs, code_size=args.table_code_size, batch_size=32,
                              seed=args.seed, contamination=args.contamination)
    # Scored from the CSV as a user would: the logged model takes raw rows and scores in its space.
    scores, threshold, part, score_s = score_run(result.run_id, str(folder / "test.csv"), workdir)
    rule = "stored"
    if threshold is None:  # a checkout whose runs store none: the same quantile rule, computed here
        train_scores, _, _, _ = score_run(result.run_id, str(folder / "benign.csv"), workdir)
        threshold, rule = float(np.quantile(train_scores, 1 - args.contamination)), "train 95th pct (none stored)"
    results.append((f"aetrack dense ({part})", scores, (scores > threshold).astype(int), rule, fit_s + score_s))

    scaler = StandardScaler().fit(x_train)  # the baselines see the same standardised features
    train, test = scaler.transform(x_train), scaler.transform(x_test)
    for name, detector in (("IsolationForest", IsolationForest(random_state=args.seed)),
                           ("LocalOutlierFactor(novelty=True)", LocalOutlierFactor(novelty=True)),
                           ("OneClassSVM", OneClassSVM(gamma="scale", nu=args.contamination))):
        start = time.perf_counter()
        detector.fit(train)
        results.append((name, -detector.score_samples(test), (detector.predict(test) == -1).astype(int),
                        "sklearn predict", time.perf_counter() - start))
    start = time.perf_counter()
    train_errors, test_errors = pca_errors(train, test, args.table_code_size)
    cut = np.quantile(train_errors, 1 - args.contamination)
    results.append((f"PCA-{args.table_code_size} error", test_errors, (test_errors > cut).astype(int),
                    "train 95th pct", time.perf_counter() - start))

    lines = ["### Breast cancer (benign normal, malignant anomalous)", "",
             f"Trained on {len(x_train)} benign rows, tested on {len(x_test)} held-out rows "
             f"({int(anomalous.sum())} malignant); split seed {args.seed}; table folder {folder}.", "",
             "| detector | AUC | AP | F1 at its threshold | threshold | seconds |", "|---|---|---|---|---|---|"]
    for name, s, f, how, sec in results:
        lines.append(f"| {name} | {roc_auc_score(anomalous, s):.3f} | {average_precision_score(anomalous, s):.3f} "
                     f"| {f1_score(anomalous, f):.3f} | {how} | {sec:.1f} |")
    return lines


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out).resolve() if args.out else None  # before the store's folder becomes the cwd
    with harness.tracking_store(args.workdir) as (_, root):
        workdir = Path(root)
        lines = [f"## Anomaly detection ({'tiny smoke run' if args.tiny else 'full'})", ""]
        lines += harness.machine_lines() + [""]
        if "mnist" in args.parts:
            lines += one_class_mnist(args, workdir) + [""]
        if "table" in args.parts:
            lines += breast_cancer(args, workdir) + [""]
        text = "\n".join(lines)
        print(text)
        if out is not None:
            out.write_text(text + "\n")


if __name__ == "__main__":
    main()
