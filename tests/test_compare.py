"""`aetrack compare` against three real runs in a temporary SQLite store: as a real subprocess once
(which must not import TensorFlow), through the CLI's `main` in this process for the other cases."""

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from aetrack.train import train
from tests.helpers.errors import error_line
from tests.helpers.imports import run_with_import_probe
from tests.helpers.processes import aetrack_in_process, run_aetrack


def aetrack(*args, uri, cwd):
    return run_aetrack(*args, uri=uri, cwd=cwd, timeout=120)


@pytest.fixture
def three_runs(tracking, tiny_config):
    """Three finished runs that differ in epochs and code size, plus one FAILED run with no metrics."""
    results = [train(tiny_config(epochs=e, code_size=c, seed=s))
               for e, c, s in ((1, 4, 0), (3, 16, 1), (2, 8, 2))]
    client = MlflowClient()
    empty = client.create_run(results[0].experiment_id, run_name="crashed")
    client.set_terminated(empty.info.run_id, "FAILED")
    return results, empty.info.run_id


def _table_rows(stdout, results):
    """The table lines naming one of the runs, in printed order, as (marked best, run name)."""
    names = {r.run_name for r in results}
    rows = []
    for line in stdout.splitlines():
        cells = line.split()
        if not cells:
            continue
        best = cells[0] == "*"
        name = cells[1] if best else cells[0]
        if name in names:
            rows.append((best, name, line))
    return rows


@pytest.mark.slow
def test_compare_ranks_runs_and_plots_their_curves(three_runs, tracking, tmp_path):
    """The real command once, in a fresh interpreter that never imports TensorFlow; the other
    orderings and run selections through the CLI's `main` in this process."""
    results, crashed_id = three_runs
    probed = run_with_import_probe("compare", "--metric", "test_bce", "--output", tmp_path / "cmp", uri=tracking,
                                   cwd=tmp_path, timeout=120)
    out = probed.out
    assert out.returncode == 0, out.stderr
    assert not {"tensorflow", "keras"} & set(probed.heavy), probed.heavy
    assert "mlflow" in probed.heavy  # the probe sees imports: compare reads the store through MLflow

    client = MlflowClient()
    logged = {r.run_name: client.get_run(r.run_id).data.metrics for r in results}
    expected = sorted(logged, key=lambda name: logged[name]["test_bce"])  # lower is better
    rows = _table_rows(out.stdout, results)
    assert [name for _, name, _ in rows] == expected
    assert [best for best, _, _ in rows] == [True, False, False]
    for _, name, line in rows:
        run = next(r for r in results if r.run_name == name)
        assert run.run_id in line and f"{logged[name]['test_bce']:.4f}" in line
        assert f"{logged[name]['test_psnr']:.4f}" in line and "basic" in line
    assert "run" in out.stdout.splitlines()[0] and "test_ssim" in out.stdout.splitlines()[0]
    assert f"best by test_bce (lower is better): {expected[0]}" in out.stdout
    assert "skipped 1 run(s) without test_bce: crashed" in out.stdout

    # Higher is better for PSNR: the order follows the logged PSNR, largest first.
    out = aetrack_in_process("compare", "--metric", "test_psnr", "--output", str(tmp_path / "cmp"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    by_psnr = sorted(logged, key=lambda name: -logged[name]["test_psnr"])
    assert [name for _, name, _ in _table_rows(out.stdout, results)] == by_psnr

    import matplotlib.image

    image = matplotlib.image.imread(tmp_path / "cmp" / "loss_curves.png")
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    rgb = image[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05 and len(np.unique(rgb, axis=0)) > 20  # curves and legend, not blank

    a, b, _ = (r.run_id for r in results)
    # `--runs A B`, repeated `--runs`, and comma lists all select the same runs.
    for args in (["--runs", a, b], ["--runs", a, "--runs", b], ["--runs", f"{a},{b}"]):
        out = aetrack_in_process("compare", *args, "--output", str(tmp_path), cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        names = [name for _, name, _ in _table_rows(out.stdout, results)]
        assert sorted(names) == sorted([results[0].run_name, results[1].run_name])
    assert (tmp_path / "loss_curves.png").stat().st_size > 1000


def _logged_runs():
    """Two runs made straight through the client: one with test_bce and val_loss, one without."""
    from mlflow.entities import Metric

    client = MlflowClient()
    experiment_id = client.create_experiment("aetrack")
    good = client.create_run(experiment_id, run_name="logged").info.run_id
    client.log_batch(good, metrics=[Metric("val_loss", 0.3 - 0.1 * s, 0, s) for s in (1, 2)]
                     + [Metric("test_bce", 0.1, 0, 2)])
    client.set_terminated(good)
    crashed = client.create_run(experiment_id, run_name="crashed").info.run_id
    client.set_terminated(crashed, "FAILED")
    return good, crashed


@pytest.mark.slow
def test_compare_errors_are_one_line(tracking, tmp_path):
    good, crashed = _logged_runs()
    (tmp_path / "file.txt").write_text("x")
    cases = [
        (["--experiment", "nope"], "invalid --experiment 'nope': no such experiment at tracking URI"),
        (["--runs", "0123456789abcdef"], "invalid --runs: unknown run id '0123456789abcdef'"),
        (["--metric", "psnr_gain_db"], "invalid --metric 'psnr_gain_db': none of the 2 runs logged it; "
                                       "expected one of test_bce, val_loss"),
        (["--runs", good, crashed], f"invalid --runs: runs without metric 'test_bce': {crashed} (crashed)"),
    ]
    for args, expected in cases:
        out = aetrack_in_process("compare", *args, "--output", str(tmp_path / "out"), cwd=tmp_path)
        line = error_line(out, 2, only_line=True)
        assert expected in line, line
        assert not (tmp_path / "out").exists()  # nothing written
    # A store that does not exist is reported, not created empty (the real command, in a child).
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    out = aetrack("compare", uri=missing, cwd=tmp_path)
    assert error_line(out, 2, only_line=True).startswith(f"aetrack: error: no tracking store at {missing}")
    assert not (tmp_path / "none.db").exists()
    out = aetrack_in_process("compare", "--output", str(tmp_path / "file.txt"), cwd=tmp_path)
    line = error_line(out, 2, only_line=True)
    assert "invalid --output" in line and "is a file" in line, line
    assert (tmp_path / "file.txt").read_text() == "x"


def test_table_has_an_architecture_column():
    from aetrack.compare import Comparison, RunSummary, format_table

    runs = [RunSummary("a" * 32, "basic-conv-run", "basic", {"architecture": "conv", "epochs": "2"}, {"test_bce": 0.1}),
            RunSummary("b" * 32, "basic-vae-run", "basic", {"architecture": "vae", "epochs": "2"},
                       {"test_bce": 0.2, "test_elbo": 99.5})]
    table = format_table(Comparison("test_bce", False, runs, [], ["test_bce", "test_elbo"])).splitlines()
    header = table[0].split()
    assert header[:3] == ["run", "entry", "architecture"] and "test_elbo" in header
    # Without the best-run mark "*" (the header's first cell is blank), cells line up with the header.
    rows = {cells[0]: cells for cells in (line.lstrip("* ").split() for line in table[1:]) if cells and cells[0].endswith("-run")}
    assert rows["basic-conv-run"][2] == "conv" and rows["basic-vae-run"][2] == "vae"
    assert rows["basic-vae-run"][header.index("test_elbo")] == "99.5000"
    assert rows["basic-conv-run"][header.index("test_elbo")] == "-"
