from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection

from tests.training.conftest import FAST
from training.models import TrainingRun
from training.services.runs import run_cancel, run_create, run_start, runs_fail_stale
from training.tasks import training_run_execute_task, training_runs_sweep_task


def _when_training(run_id: int, then) -> threading.Thread:
    """In another thread: wait until the run's child logged a step, then call ``then``."""

    def watch():
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                row = TrainingRun.objects.filter(pk=run_id).values("child_pid", "step").get()
                if row["child_pid"] and row["step"] >= 1:
                    then(row["child_pid"])
                    return
                time.sleep(0.1)
        finally:
            connection.close()

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def _long_run(snapshot, tiny_model_dir):
    return run_create(
        snapshot=snapshot,
        preset="tiny_cpu_dpo",
        base_model=str(tiny_model_dir),
        hyperparameters={**FAST, "max_steps": 5000},
        enqueue=False,
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_child_process_leaves_the_run_failed_not_running(snapshot, tiny_model_dir):
    run = _long_run(snapshot, tiny_model_dir)
    watcher = _when_training(run.pk, lambda pid: os.kill(pid, signal.SIGKILL))

    training_run_execute_task(run.pk)  # the worker, supervising the child
    watcher.join()

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "killed by SIGKILL" in run.error
    assert run.child_pid is None
    assert run.metrics.exists()  # it was mid-run


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cancel_from_the_admin_terminates_the_child(snapshot, tiny_model_dir, ml_engineer):
    run = _long_run(snapshot, tiny_model_dir)
    pids = []

    def cancel(pid):
        pids.append(pid)
        run_cancel(run=TrainingRun.objects.get(pk=run.pk), by=ml_engineer)

    watcher = _when_training(run.pk, cancel)
    training_run_execute_task(run.pk)
    watcher.join()

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
    assert run.step < 5000
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # the child is gone


def test_a_run_delivered_twice_is_trained_once(snapshot, tiny_model_dir):
    run = run_create(
        snapshot=snapshot, base_model=str(tiny_model_dir), algorithm="dpo", enqueue=False
    )
    assert run_start(run_id=run.pk) is not None
    # the broker redelivers the task while the first delivery is running
    assert run_start(run_id=run.pk) is None
    training_run_execute_task(run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING
    assert run.child_pid is None  # no second child was started


def test_a_cancelled_queued_run_is_never_started(snapshot, tiny_model_dir, ml_engineer):
    run = run_create(
        snapshot=snapshot, base_model=str(tiny_model_dir), algorithm="dpo", enqueue=False
    )
    run_cancel(run=run, by=ml_engineer)
    training_run_execute_task(run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
    assert run.started_at is None


def test_the_sweep_fails_runs_whose_worker_stopped_heartbeating(snapshot, tiny_model_dir):
    stale = run_create(
        snapshot=snapshot, base_model=str(tiny_model_dir), algorithm="dpo", enqueue=False
    )
    run_start(run_id=stale.pk)

    # a run that just sent a heartbeat is left alone by the scheduled sweep
    assert training_runs_sweep_task() == []
    # once the heartbeat is older than the timeout, the run is failed, never left running
    assert runs_fail_stale(older_than=timedelta(seconds=0)) == [stale.pk]
    stale.refresh_from_db()
    assert stale.status == TrainingRun.Status.FAILED
    assert "no heartbeat" in stale.error


def test_a_hub_id_is_refused_as_base_model(snapshot):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="hub"):
        run_create(snapshot=snapshot, base_model="meta-llama/Llama-2-7b", algorithm="dpo")
    assert not TrainingRun.objects.exists()


def test_ppo_without_a_reward_run_is_refused(snapshot, tiny_model_dir):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="reward"):
        run_create(snapshot=snapshot, base_model=str(tiny_model_dir), preset="tiny_cpu_ppo")
