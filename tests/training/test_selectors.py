from __future__ import annotations

from training.selectors import run_metric_series, run_progress
from training.services.runs import run_create, run_metrics_record, run_start


def test_progress_reports_fraction_and_an_eta_while_running(snapshot, tiny_model_dir):
    run = run_create(
        snapshot=snapshot, base_model=str(tiny_model_dir), algorithm="dpo", enqueue=False
    )
    assert run_progress(run=run)["eta_seconds"] is None  # queued: no estimate yet

    run_start(run_id=run.pk)
    run_metrics_record(run=run, step=2, total=8, metrics={"loss": 0.5})
    run.refresh_from_db()
    progress = run_progress(run=run)

    assert progress["status"] == "running"
    assert progress["fraction"] == 0.25
    assert progress["eta_seconds"] is not None
    assert progress["eta_seconds"] >= 0


def test_metric_series_are_grouped_by_name_in_step_order(snapshot, tiny_model_dir):
    run = run_create(
        snapshot=snapshot, base_model=str(tiny_model_dir), algorithm="dpo", enqueue=False
    )
    run_metrics_record(run=run, step=2, total=3, metrics={"objective/scores": 0.5})
    run_metrics_record(run=run, step=1, total=3, metrics={"objective/scores": -0.5, "kl": 0.1})

    series = run_metric_series(run=run)

    assert series == {"objective/scores": [[1, -0.5], [2, 0.5]], "kl": [[1, 0.1]]}
