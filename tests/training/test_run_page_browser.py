"""The training run page in a real browser (Debian chromium via Playwright), at a laptop
width and a phone width: no section overlaps another and nothing overflows sideways.
Screenshots are kept under var/test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from training.services.runs import run_approve, run_heartbeat, run_metrics_record

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(settings.BASE_DIR) / "var" / "test-artifacts"

# Every block of the run page, Django's fieldsets included.
SECTIONS = "#content-main fieldset, .training-run > section, .training-actions, .submit-row"

LOG = [
    "dpo on cpu, base /srv/loopdesk/var/models/starter",
    "Loading weights: 100%|██████████| 20/20 [00:00<00:00, 22069.48it/s]",
    "/srv/.venv/lib/python3.11/site-packages/transformers/training_args.py:1541: "
    "FutureWarning: `gradient_checkpointing` is deprecated and will be removed in v6.",
    '  warnings.warn(f"`{old}` is deprecated", FutureWarning)',
    "evaluating on 4 held-out questions",
    "dpo finished: adapter",
]

MEASURE = """(selector) => {
  const boxes = [...document.querySelectorAll(selector)]
    .filter((el) => el.offsetParent !== null)
    .map((el) => {
      const r = el.getBoundingClientRect();
      const name = el.id || el.className || el.tagName;
      return {name: String(name), top: r.top + scrollY, bottom: r.bottom + scrollY,
              left: r.left, right: r.right};
    });
  const overflowing = [...document.querySelectorAll("body *")]
    .filter((el) => el.offsetParent !== null)
    .filter((el) => {
      // inside a scroll box the box scrolls, not the page
      for (let p = el.parentElement; p; p = p.parentElement) {
        const style = getComputedStyle(p);
        if (["auto", "scroll", "hidden"].includes(style.overflowX)) return false;
      }
      return el.getBoundingClientRect().right > document.documentElement.clientWidth + 1;
    })
    .map((el) => el.tagName + "#" + el.id + "." + el.className);
  return {
    boxes,
    overflowing,
    pageWidth: document.documentElement.scrollWidth,
    viewport: document.documentElement.clientWidth,
  };
}"""


def _overlaps(a: dict, b: dict) -> bool:
    return (
        a["left"] < b["right"] - 1
        and b["left"] < a["right"] - 1
        and a["top"] < b["bottom"] - 1
        and b["top"] < a["bottom"] - 1
    )


@pytest.fixture
def finished_run(succeeded_run, ml_engineer):
    run = succeeded_run(good_after=3, good_before=1)
    for step in range(1, 21):
        run_metrics_record(
            run=run,
            step=step,
            total=20,
            metrics={
                "rewards/margins": step * 0.3,
                "rewards/accuracies": min(1, step / 10),
                "loss": 0.7 / step,
            },
        )
    run_heartbeat(run=run, log_lines=LOG)
    return run_approve(run=run, by=ml_engineer)


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-for-tests")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")


@pytest.mark.parametrize(("width", "height"), [(1366, 900), (390, 844)])
def test_a_finished_runs_page_has_no_overlapping_or_overflowing_section(
    width, height, finished_run, ml_engineer, asgi_live_server, browser
):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    log_in(page, asgi_live_server, ml_engineer.username)
    url = reverse("admin:training_trainingrun_change", args=[finished_run.pk])

    page.goto(f"{asgi_live_server}{url}")
    page.wait_for_selector("#training-chart svg path")  # the live data arrived and drew
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"training-run-page-{width}.png"), full_page=True)
    layout = page.evaluate(MEASURE, SECTIONS)

    names = [box["name"] for box in layout["boxes"]]
    assert len(names) >= 8, names  # fieldsets, progress, chart, log, evaluation, actions
    overlapping = [
        (a["name"], b["name"])
        for i, a in enumerate(layout["boxes"])
        for b in layout["boxes"][i + 1 :]
        if _overlaps(a, b)
    ]
    assert overlapping == []
    assert layout["pageWidth"] <= layout["viewport"], layout["overflowing"]
    assert layout["overflowing"] == []
    # what the sections show
    log = page.inner_text("#training-log")
    assert "evaluating on 4 held-out questions" in log
    assert "warnings.warn(" not in log and "it/s]" not in log and "FutureWarning" not in log
    assert page.locator(".training-eval-answer").count() == 8  # 4 questions, before + after
    context.close()


@pytest.fixture
def router_run(snapshot, ml_engineer):
    """An intent-router run brought to "succeeded" through the services, its evaluation
    built from the shipped router's real evaluation on a few messages of each class."""
    from chat.assistant.router import router_shipped
    from chat.assistant.router_training import dataset_load, router_evaluate
    from chat.services.intents import texts_embed
    from training.services.router_run import router_evaluation
    from training.services.runs import run_create, run_start, run_succeed

    taken: dict[str, int] = {}
    rows = []
    for row in dataset_load("eval"):
        if taken.get(row.label, 0) < 3:
            taken[row.label] = taken.get(row.label, 0) + 1
            rows.append(row)
    shipped = router_evaluate(
        router_shipped(), part="eval", rows=rows, vectors=texts_embed([r.text for r in rows])
    ).as_dict()
    run = run_create(
        snapshot=snapshot, created_by=ml_engineer, preset="intent_router", enqueue=False
    )
    run_start(run_id=run.pk)
    for step in range(1, 10):
        run_metrics_record(
            run=run, step=step, total=9, metrics={"after/escalate_recall": 0.9 + step / 100}
        )
    summary = {
        "artifact": "router",
        "version": f"router-run-{run.pk}",
        "live_version": "router-1",
        "agent_rows": 2,
        "calibration": {"precision": 0.95, "recall": 0.96},
        "before": shipped,
        "after": shipped,
    }
    evaluation = router_evaluation(result={"summary": summary})
    run = run_succeed(run_id=run.pk, artifact_prefix="", manifest={}, evaluation=evaluation)
    return run_approve(run=run, by=ml_engineer)


@pytest.mark.parametrize(("width", "height"), [(1366, 900), (390, 844)])
def test_an_intent_router_runs_page_has_no_overlapping_or_overflowing_section(
    width, height, router_run, ml_engineer, asgi_live_server, browser
):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    log_in(page, asgi_live_server, ml_engineer.username)
    url = reverse("admin:training_trainingrun_change", args=[router_run.pk])

    page.goto(f"{asgi_live_server}{url}")
    page.wait_for_selector("#training-chart svg path")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"training-router-run-page-{width}.png"), full_page=True)
    layout = page.evaluate(MEASURE, SECTIONS)

    overlapping = [
        (a["name"], b["name"])
        for i, a in enumerate(layout["boxes"])
        for b in layout["boxes"][i + 1 :]
        if _overlaps(a, b)
    ]
    assert overlapping == []
    assert layout["pageWidth"] <= layout["viewport"], layout["overflowing"]
    assert layout["overflowing"] == []
    table = page.inner_text("[data-testid=router-before-after]")
    assert "router-1" in table and f"router-run-{router_run.pk}" in table
    assert page.locator("[data-testid=router-per-class] tbody tr").count() == 15
    assert page.get_by_role("button", name="Make this router live").is_visible()
    context.close()
