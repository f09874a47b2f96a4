"""End-of-run metrics (PSNR, SSIM, denoising gain, anomaly AUC) read back from a real store."""

import pytest
from mlflow.tracking import MlflowClient

from aetrack.data import load_dataset
from aetrack.evaluation import per_image_mse, psnr, ssim
from aetrack.noise import add_noise
from aetrack.train import train

QUALITY = {"test_bce", "test_mse", "test_psnr", "test_ssim"}
DENOISE_ONLY = {"noisy_psnr", "noisy_ssim", "psnr_gain_db", "test_psnr_noise_0.2", "test_psnr_noise_0.4",
                "test_psnr_noise_0.6"}


def _final(client, run_id):
    run = client.get_run(run_id)
    return run, run.data.metrics


def test_basic_run_logs_quality_metrics(basic_run, tiny_config):
    result = basic_run.result
    client = MlflowClient()
    run, logged = _final(client, result.run_id)
    assert QUALITY <= set(logged) and not (DENOISE_ONLY & set(logged)) and "anomaly_auc" not in logged
    # Logged once, at the last epoch's step, and equal to an independent recomputation.
    assert [m.step for m in client.get_metric_history(result.run_id, "test_psnr")] == [basic_run.config.epochs]
    data = load_dataset(tiny_config().dataset, 256, 32)
    predicted = result.model(data.x_test, training=False).numpy()
    assert logged["test_psnr"] == pytest.approx(psnr(data.x_test, predicted), rel=1e-6)
    assert logged["test_ssim"] == pytest.approx(ssim(data.x_test, predicted), rel=1e-6)
    assert 5 < logged["test_psnr"] < 60 and 0 < logged["test_ssim"] < 1


@pytest.mark.slow  # trains in-process for several seconds: make test, not test-fast
def test_denoiser_psnr_gain_on_real_digits(tracking, tiny_config, real_mnist_small):
    config = tiny_config(entry_point="denoise", dataset=str(real_mnist_small), train_samples=2000,
                         test_samples=200, epochs=3, code_size=64, noise_factor=0.4)
    result = train(config)
    _, logged = _final(MlflowClient(), result.run_id)
    assert QUALITY | DENOISE_ONLY <= set(logged)
    assert logged["psnr_gain_db"] == pytest.approx(logged["test_psnr"] - logged["noisy_psnr"], abs=1e-9)
    assert logged["psnr_gain_db"] > 0

    # The noisy baseline is the run's own validation input (seed + 1) against the clean images.
    data = load_dataset(config.dataset, 2000, 200)
    noisy = add_noise(data.x_test, 0.4, config.seed + 1)
    assert logged["noisy_psnr"] == pytest.approx(psnr(data.x_test, noisy), rel=1e-6)
    assert logged["noisy_ssim"] == pytest.approx(ssim(data.x_test, noisy), rel=1e-6)
    # Robustness curve: the model's output on fresh noise (seeds seed + 2, + 3, + 4) at each factor.
    for i, factor in enumerate((0.2, 0.4, 0.6)):
        fresh = add_noise(data.x_test, factor, config.seed + 2 + i)
        expected = psnr(data.x_test, result.model(fresh, training=False).numpy())
        assert logged[f"test_psnr_noise_{factor}"] == pytest.approx(expected, rel=1e-5)
    # Fresh noise at the training factor scores like the validation noise did.
    assert logged["test_psnr_noise_0.4"] == pytest.approx(logged["test_psnr"], abs=0.5)


@pytest.mark.slow  # trains in-process for several seconds: make test, not test-fast
def test_excluded_digit_is_flagged_by_reconstruction_error(tracking, tiny_config, real_mnist_small):
    from sklearn.metrics import roc_auc_score

    excluded = 0
    config = tiny_config(dataset=str(real_mnist_small), train_samples=1500, test_samples=200, epochs=3,
                         code_size=32, exclude_digits=str(excluded))
    result = train(config)
    run, logged = _final(MlflowClient(), result.run_id)

    # The run trained on the filtered split: its data hash is that of the split without the digit.
    used = load_dataset(config.dataset, 1500, 200, (excluded,))
    assert excluded not in set(used.y_train.tolist()) and len(used.y_train) == 1500
    assert run.data.tags["aetrack.dataset_sha256"] == used.sha256
    assert run.data.tags["aetrack.dataset_sha256"] != load_dataset(config.dataset, 1500, 200).sha256
    assert run.data.params["exclude_digits"] == "0"

    auc = logged["anomaly_auc"]
    assert 0.5 < auc <= 1.0
    errors = per_image_mse(used.x_test, result.model(used.x_test, training=False).numpy())
    assert auc == pytest.approx(roc_auc_score(used.y_test == excluded, errors), abs=1e-9)
    per_digit = {d: logged[f"test_mse_digit_{d}"] for d in range(10)}
    assert per_digit[excluded] == pytest.approx(errors[used.y_test == excluded].mean(), rel=1e-6)
    print(f"anomaly_auc={auc:.4f} per-digit mse={per_digit}")
