"""The retriever adapter: a run kind that trains LoRA on MiniLM's question side from
labels, is evaluated before/after, passes (or not) the deployment gate, and is used by
the assistant per request once deployed."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat.assistant.adapters import adapter_forget
from chat.assistant.embeddings import adapter_fork_layer, encode_texts
from chat.assistant.evaluation import questions_load
from labeling.services import snapshot_create_from_rows
from tests.chat.knowledge_fixtures import knowledge_base  # noqa: F401 (fixture)
from training.models import AdapterDeployment, RunMetric, TrainingRun
from training.services.artifacts import artifact_local_dir

TINY_RETRIEVER = {"epochs": 1, "batch_size": 4, "threads": 1}


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


def _answerable(name: str, count: int) -> list[dict]:
    """``count`` answerable questions of the set, each about another article."""
    picked: dict[str, dict] = {}
    for q in questions_load(name):
        if q.get("article") and q.get("evidence") and q["article"] not in picked:
            picked[q["article"]] = q
    return list(picked.values())[:count]


@pytest.fixture
def labelled_snapshot(knowledge_base):  # noqa: F811
    """Reviewers' verdicts as a snapshot: each question's evidence sentence (a quote of
    its article) rated 5, another article's evidence rated 1; the last two held out."""
    questions = _answerable("train", 8)
    scored = []
    for i, q in enumerate(questions):
        wrong = next(o for o in questions[i + 1 :] + questions if o["article"] != q["article"])
        split = "test" if i >= len(questions) - 2 else "train"
        scored.append(
            {"prompt": q["question"], "response": q["evidence"], "score": 5, "split": split}
        )
        scored.append(
            {"prompt": q["question"], "response": wrong["evidence"], "score": 1, "split": split}
        )
    return snapshot_create_from_rows(name="retriever-labels", rows={"scored": scored})


@pytest.fixture
def retriever_settings(settings):
    settings.ASSISTANT_PROVIDER = "local"
    settings.ASSISTANT_ADAPTER_REFRESH_SECONDS = 0
    adapter_forget()
    yield settings
    adapter_forget()


@pytest.fixture(scope="session")
def scrambled_retriever_dir(tmp_path_factory) -> Path:
    """A retriever adapter that maps questions far from their passages (LoRA with large
    random weights on MiniLM), saved where a run saves its adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from sentence_transformers import SentenceTransformer

    from training.services.retriever_backend import minilm_path

    torch.manual_seed(3)
    out = tmp_path_factory.mktemp("retriever-work") / "adapter"
    encoder = SentenceTransformer(minilm_path(), device="cpu")
    model = get_peft_model(
        encoder[0].model,
        LoraConfig(r=8, lora_alpha=64, target_modules=["query", "value"], init_lora_weights=False),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    model.save_pretrained(out)
    return out


def test_a_retriever_run_trains_on_labels_and_is_evaluated_before_and_after(
    labelled_snapshot, ml_engineer, run_in_sync, retriever_settings
):
    run = run_in_sync(
        snapshot=labelled_snapshot,
        created_by=ml_engineer,
        preset="retriever_minilm",
        hyperparameters=TINY_RETRIEVER,
    )

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.manifest["algorithm"] == "retriever"
    assert "adapter/adapter_config.json" in run.manifest["files"]
    # LoRA on the top 2 of MiniLM's 6 layers (the preset's), recorded with the run; the
    # assistant shares the lower 4 layers' pass with the router's base vector.
    assert run.manifest["config"]["hyperparameters"]["lora_top_layers"] == 2
    assert adapter_fork_layer(str(artifact_local_dir(run=run, kind="adapter"))) == 4
    assert RunMetric.objects.filter(run=run, name="loss/passage").count() == run.step >= 1
    # Trained through the assistant's own ranking too (the preset's fused loss); the
    # index's token vectors it read are not kept as an artifact.
    assert RunMetric.objects.filter(run=run, name="loss/fused").count() == run.step
    assert not any("passage_tokens" in name for name in run.manifest["files"])
    evaluation = run.evaluation
    assert evaluation["kind"] == "retriever"
    assert evaluation["answerable"] == 2  # the two held-out questions
    for side in ("before", "after"):
        assert 0 <= evaluation[side]["right_article_first"] <= 1
        assert 1 <= evaluation[side]["mean"] <= 5
    held_out = {_normalised(q["question"]) for q in _answerable("train", 8)[-2:]}
    assert {_normalised(r["prompt"]) for r in evaluation["rows"]} == held_out


@pytest.mark.parametrize(("top", "layers"), [(0, None), (2, [4, 5]), (3, [3, 4, 5]), (6, None)])
def test_the_retriever_lora_adapts_the_top_layers_it_is_told(top, layers):
    from training.services.retriever_backend import lora_config

    config = lora_config({"hyperparameters": {"lora_top_layers": top}}, num_layers=6)

    assert config.layers_to_transform == layers
    assert config.layers_pattern == ("layer" if layers else None)


def test_the_training_ranker_ranks_as_the_assistant_does(tmp_path):
    """The adapter is trained through ``FusedRanker``: with the base encoder it must put
    first the article ``knowledge_search`` puts first (same candidates, signals, weights,
    code boost), or the loss would teach another ranking than the one served."""
    import torch

    from chat.assistant.evaluation import demo_index
    from chat.assistant.knowledge import knowledge_search
    from tests.chat.knowledge_fixtures import MemoEmbedder
    from training.services.retriever import lexical_signals, retriever_corpus
    from training.services.retriever_backend import (
        FusedRanker,
        _forward_tokens,
        _load,
        minilm_path,
    )

    index = demo_index(MemoEmbedder())
    corpus = retriever_corpus(index, tmp_path)
    model = _load(minilm_path()).eval()
    ranker = FusedRanker(
        corpus=corpus,
        tokenizer=model.tokenizer,
        passage_vectors=torch.tensor(index.passage_matrix),
        article_vectors=torch.tensor(index.article_matrix),
    )
    questions = [q["question"] for q in questions_load("dev")[:40]]
    with torch.no_grad():
        q, tokens, ids, mask = _forward_tokens(model, questions)
    same = 0
    for b, question in enumerate(questions):
        row = {"lexical": lexical_signals(index=index, question=question)}
        query_tokens = ranker._query_tokens(tokens, ids, mask, b)
        candidates, fused = ranker.fused(vector=q[b], query_tokens=query_tokens, row=row)
        ours = int(ranker.owner[int(candidates[int(torch.argmax(fused))])])
        served = knowledge_search(
            index=index, query=encode_texts([question])[0], query_text=question, top_k=1
        )
        same += index.slugs[ours] == served.passages[0].slug
    # float16 token vectors in the file vs float32 in memory may swap a near tie.
    assert same >= len(questions) - 1


def test_more_top_layers_than_the_encoder_has_is_refused():
    from training.services.retriever_backend import RetrieverConfigError, lora_config

    with pytest.raises(RetrieverConfigError, match="between 0"):
        lora_config({"hyperparameters": {"lora_top_layers": 7}}, num_layers=6)


def _retriever_run(*, snapshot, by, adapter_dir: Path, evaluation: dict) -> TrainingRun:
    from training.services.artifacts import artifacts_store
    from training.services.runs import run_approve, run_create, run_start, run_succeed

    run = run_create(snapshot=snapshot, created_by=by, preset="retriever_minilm", enqueue=False)
    run_start(run_id=run.pk)
    prefix, manifest = artifacts_store(
        run=run, local_dir=adapter_dir.parent, manifest={"base_model": run.base_model}
    )
    run = run_succeed(
        run_id=run.pk, artifact_prefix=prefix, manifest=manifest, evaluation=evaluation
    )
    return run_approve(run=run, by=by)


def test_the_gate_refuses_a_retriever_adapter_that_cites_the_right_article_less_often(
    labelled_snapshot, admin_member, scrambled_retriever_dir, retriever_settings
):
    from training.services.deployments import DeploymentGateRefused, adapter_deploy
    from training.services.retriever import retriever_evaluate

    questions = [
        {"question": q["question"], "article": q["article"], "reference": q["reference_answer"]}
        for q in _answerable("dev", 6)
    ]
    evaluation = retriever_evaluate(questions=questions, adapter_path=str(scrambled_retriever_dir))
    assert evaluation["after"]["right_article_first"] < evaluation["before"]["right_article_first"]
    run = _retriever_run(
        snapshot=labelled_snapshot,
        by=admin_member,
        adapter_dir=scrambled_retriever_dir,
        evaluation=evaluation,
    )

    with pytest.raises(DeploymentGateRefused) as refused:
        adapter_deploy(run=run, by=admin_member)

    assert "right article cited first" in str(refused.value)
    assert not AdapterDeployment.objects.filter(active=True).exists()


async def _first_citation(question: str) -> str | None:
    from chat.assistant import assistant_prepare

    prepared = await assistant_prepare(question=question, history=[])
    return prepared.passages[0].slug if prepared.passages else None


@pytest.mark.django_db(transaction=True)
def test_the_assistant_uses_the_deployed_retriever_per_request_and_a_rollback_restores_it(
    knowledge_base,  # noqa: F811
    admin_member,
    scrambled_retriever_dir,
    retriever_settings,
):
    from asgiref.sync import async_to_sync

    from training.services.deployments import adapter_deploy, adapter_rollback

    snapshot = snapshot_create_from_rows(name="empty", rows={"scored": []})
    run = _retriever_run(
        snapshot=snapshot,
        by=admin_member,
        adapter_dir=scrambled_retriever_dir,
        evaluation={},
    )
    questions = _answerable("dev", 6)
    base = [async_to_sync(_first_citation)(q["question"]) for q in questions]
    assert sum(b == q["article"] for b, q in zip(base, questions, strict=True)) >= 4

    adapter_deploy(
        run=run, by=admin_member, force_reason="checking that the assistant switches encoder"
    )
    adapted = [async_to_sync(_first_citation)(q["question"]) for q in questions]
    assert adapted != base  # the same process, no restart: the next question used it

    adapter_rollback(by=admin_member, kind=AdapterDeployment.Kind.RETRIEVER)
    assert [async_to_sync(_first_citation)(q["question"]) for q in questions] == base


def test_a_retriever_deployment_leaves_the_generator_slot_alone(
    labelled_snapshot, admin_member, scrambled_retriever_dir, succeeded_run
):
    from training.selectors import adapter_live, retriever_adapter_live
    from training.services.deployments import adapter_deploy

    generator = succeeded_run()
    from training.services.runs import run_approve

    adapter_deploy(run=run_approve(run=generator, by=admin_member), by=admin_member)
    retriever = _retriever_run(
        snapshot=labelled_snapshot,
        by=admin_member,
        adapter_dir=scrambled_retriever_dir,
        evaluation={},
    )
    adapter_deploy(run=retriever, by=admin_member, force_reason="a second kind in one slot")

    assert adapter_live().name == generator.adapter_name
    assert retriever_adapter_live().name == retriever.adapter_name


def test_the_loop_demo_never_trains_on_a_held_out_question():
    from training.loop_demo import eval_questions, train_questions

    traffic = {_normalised(q["question"]) for q in train_questions()}
    held_out = {_normalised(q["question"]) for q in eval_questions()}

    assert len(held_out) == 333
    assert not traffic & held_out
    # The training file repeats 3 held-out questions word for word: they are left out.
    assert len(traffic) >= len(questions_load("train")) - 3


def test_a_hedged_reply_is_traced_to_the_passage_it_quotes_like_a_confident_one():
    # Most replies are hedged since the answerability calibration: a reviewer's 5 on one
    # says its passage answers the question, so it must give a training row too.
    from chat.assistant.chain import HEDGE_OPENING, NO_ANSWER_TEXT, PERSON_OFFER_TEXT
    from chat.assistant.evaluation import demo_index
    from training.services.retriever import QuestionEncoder, answer_passages

    index = demo_index(QuestionEncoder())
    question = _answerable("train", 1)[0]
    confident = f"{question['evidence']} [1]"
    hedged = f"{HEDGE_OPENING}\n\n{confident}\n\n{PERSON_OFFER_TEXT}"

    confident_row, hedged_row, dont_know_row = answer_passages(
        index=index, answers=[confident, hedged, NO_ANSWER_TEXT]
    )
    (untraced_row,) = answer_passages(index=index, answers=[hedged], trace_hedged=False)

    assert confident_row is not None
    assert index.slugs[int(index.passage_article[confident_row])] == question["article"]
    assert hedged_row == confident_row
    assert untraced_row is None  # what the run did before: the hedge quotes no passage
    assert dont_know_row is None


def test_the_simulated_reviewer_rates_by_the_cited_article_and_quotes_the_right_one():
    from types import SimpleNamespace

    from training.loop_demo import simulated_review

    question = _answerable("train", 1)[0]
    labelled = {_normalised(question["question"]): question}

    def item(slug: str | None):
        context = [{"slug": slug, "title": slug, "score": 1.0}] if slug else []
        return SimpleNamespace(question=question["question"], context=context)

    assert simulated_review(item=item(question["article"]), labelled=labelled) == (5, "")
    assert simulated_review(item=item("some-other-article"), labelled=labelled) == (
        1,
        question["evidence"],
    )
    assert simulated_review(item=item(None), labelled={}) is None


@pytest.mark.django_db(transaction=True)
def test_loop_demo_runs_the_loop_and_reports_held_out_figures_last(
    knowledge_base,  # noqa: F811
    retriever_settings,
):
    import io
    import json

    from django.core.management import call_command

    from labeling.models import SnapshotRow
    from training.loop_demo import eval_questions

    out = io.StringIO()
    call_command("loop_demo", traffic=24, held_out=12, epochs=1, stdout=out)

    lines = out.getvalue().strip().splitlines()
    figures = json.loads(lines[-1])
    for key in ("right_article_before", "right_article_after", "right_article_after_adapter"):
        assert 0 <= figures[key] <= 1
    for key in ("judge_mean_before", "judge_mean_after", "judge_mean_after_adapter"):
        assert 1 <= figures[key] <= 5
    # "after" is the whole loop (the adapter, then the answer memory), printed last in
    # the table; "after_adapter" the adapter alone.
    table = {
        line.split("  ")[0]: line.split()[-3:]
        for line in lines
        if line.startswith(("right article cited first", "judge mean"))
    }
    before, adapter, whole = table["right article cited first"]
    assert before == f"{figures['right_article_before']:.1%}"
    assert adapter == f"{figures['right_article_after_adapter']:.1%}"
    assert whole == f"{figures['right_article_after']:.1%}"
    assert figures["held_out_questions"] == 12
    assert "SIMULATED" in out.getvalue()
    run = TrainingRun.objects.get(name="loop demo retriever adapter")
    assert run.status == TrainingRun.Status.SUCCEEDED
    # No held-out question is in any row the adapter learnt from or was evaluated on.
    held_out = {_normalised(q["question"]) for q in eval_questions()}
    prompts = {
        _normalised(row.data["prompt"]) for row in SnapshotRow.objects.filter(snapshot=run.snapshot)
    }
    assert prompts and not prompts & held_out
