"""The responder without models: retrieval, the write/reuse/stay-silent decision, prompts,
post-processing and the LangChain chain, over a hashing bag-of-words embedder and fakes."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from support.respond_fakes import FakeGenerator, HashEmbedder

from deskpilot.errors import ConfigError, InputDataError
from deskpilot.tasks.respond import (
    SYSTEM_PROMPT,
    DeskpilotChatModel,
    Hit,
    KnowledgeIndex,
    KnowledgeRetriever,
    Responder,
    ResponderPolicy,
    build_messages,
    clean_draft,
    draft_confidence,
    invented_identifiers,
    training_examples,
)
from deskpilot.types import Generation

QUESTIONS = [
    "I was charged twice for my monthly subscription this month",
    "The invoice shows the wrong company address, please correct it",
    "How do I reset my password? The reset email never arrives",
    "My parcel has not arrived yet and tracking shows no update",
    "I want to return the shoes I bought, they are too small",
]
ANSWERS = [
    "Sorry about the double charge. We have refunded the duplicate payment; it shows within 5 days.",
    "We have corrected the address and sent a new invoice to {{Email Address}}.",
    "Please use the reset link at https://help.example.com/reset and check your spam folder.",
    "Your parcel is delayed at the depot. Tracking will update within 24 hours.",
    "You can return them within 30 days from {{Order Details}}. A label is attached.",
]
LABELS = ["billing", "billing", "account_access", "shipping", "returns"]
IDS = [f"kb:{i}" for i in range(len(QUESTIONS))]


@pytest.fixture
def index() -> KnowledgeIndex:
    return KnowledgeIndex.from_pairs(QUESTIONS, ANSWERS, IDS, HashEmbedder(), labels=LABELS)


# a ticket like the first one, but not the same
CHARGED = "charged twice for the subscription, please refund the double payment"


def test_no_draft_below_the_floor_says_how_close_the_nearest_was(index: KnowledgeIndex) -> None:
    generator = FakeGenerator("should not be asked")
    draft = Responder(index, generator).respond("default", "quantum banana telescope")
    assert (draft.text, draft.mode, draft.sources, draft.confidence) == (None, "none", (), 0.0)
    assert draft.reason is not None
    assert re.fullmatch(r"no similar resolved ticket \(best similarity 0\.\d\d < 0\.55\)", draft.reason)
    assert generator.calls == []


def test_an_empty_knowledge_base_gives_no_draft() -> None:
    empty = KnowledgeIndex(HashEmbedder())
    draft = Responder(empty, FakeGenerator("x")).respond("acme", "anything at all")
    assert draft.mode == "none" and draft.text is None
    assert draft.reason == "no resolved tickets in the knowledge base yet"


def test_a_nearly_identical_ticket_gets_the_past_answer_as_it_was(index: KnowledgeIndex) -> None:
    generator = FakeGenerator("should not be asked")
    draft = Responder(index, generator).respond("default", QUESTIONS[3])
    assert draft.mode == "reused"
    assert (draft.text, draft.sources) == (ANSWERS[3], ("kb:3",))
    assert draft.confidence == pytest.approx(1.0)
    assert draft.reason is not None and "nearly the same" in draft.reason
    assert generator.calls == []


def test_in_between_a_draft_is_generated_from_the_nearest_examples(index: KnowledgeIndex) -> None:
    generator = FakeGenerator("Sorry for the double charge. We have refunded the duplicate payment.")
    policy = ResponderPolicy(floor=0.2, max_new_tokens=64)
    draft = Responder(index, generator, policy).respond("default", CHARGED)
    best = index.best_similarity("default", CHARGED)
    assert best is not None and policy.floor <= best < policy.reuse_similarity
    assert draft.mode == "generated"
    assert draft.text == generator.text
    assert draft.sources[0] == "kb:0" and len(draft.sources) <= policy.k
    assert draft.confidence == pytest.approx(best * math.exp(-0.2))
    assert draft.adapter_version == "gen-v7"
    (messages, max_new_tokens), *_ = generator.calls
    assert max_new_tokens == 64
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert messages[-1] == {"role": "user", "content": f"Ticket: {CHARGED}"}
    # the best example sits right before the new ticket
    assert messages[-3:-1] == [
        {"role": "user", "content": f"Ticket: {QUESTIONS[0]}"},
        {"role": "assistant", "content": ANSWERS[0]},
    ]


def test_a_draft_below_min_confidence_is_replaced_by_the_nearest_answer(index: KnowledgeIndex) -> None:
    unsure = FakeGenerator("We refunded you I think maybe.", mean_logprob=-4.0)
    draft = Responder(index, unsure, ResponderPolicy(floor=0.2)).respond("default", CHARGED)
    assert draft.mode == "reused" and draft.text == ANSWERS[0] and draft.sources == ("kb:0",)
    assert draft.reason is not None and "confidence" in draft.reason
    silent = Responder(index, unsure, ResponderPolicy(floor=0.2, reuse_fallback=False))
    nothing = silent.respond("default", CHARGED)
    assert nothing.mode == "none" and nothing.text is None
    assert nothing.confidence < 0.25


def test_an_empty_generation_falls_back_too(index: KnowledgeIndex) -> None:
    draft = Responder(index, FakeGenerator("Assistant:"), ResponderPolicy(floor=0.2)).respond(
        "default", CHARGED
    )
    assert draft.mode == "reused" and draft.reason is not None and "empty" in draft.reason


def test_without_a_generator_the_nearest_answer_is_offered(index: KnowledgeIndex) -> None:
    draft = Responder(index, None, ResponderPolicy(floor=0.2)).respond("default", CHARGED)
    assert (draft.mode, draft.text, draft.sources) == ("reused", ANSWERS[0], ("kb:0",))


def test_a_reused_answer_does_not_leak_the_previous_customers_order_number() -> None:
    index = KnowledgeIndex.from_pairs(
        ["please refund order 12345678 it arrived broken"],
        ["Order 12345678 is refunded. Details: https://help.example.com/refunds"],
        ["kb:1"],
        HashEmbedder(),
    )
    draft = Responder(index, None, ResponderPolicy(floor=0.2, reuse_similarity=0.75)).respond(
        "default", "please refund order 99887766 it arrived broken"
    )
    assert draft.mode == "reused"
    assert draft.text == "Order {{order number}} is refunded. Details: https://help.example.com/refunds"


def test_tokens_stream_to_on_token_and_the_draft_is_post_processed(index: KnowledgeIndex) -> None:
    generator = FakeGenerator("Reply: We refunded the duplicate payment.\nCustomer: thanks")
    pieces: list[str] = []
    draft = Responder(index, generator, ResponderPolicy(floor=0.2)).respond(
        "default", CHARGED, on_token=pieces.append
    )
    assert "".join(pieces) == generator.text
    assert draft.text == "We refunded the duplicate payment."


def test_generator_errors_reach_the_caller(index: KnowledgeIndex) -> None:
    class Broken(FakeGenerator):
        def generate(self, messages: Sequence[Mapping[str, str]], **kwargs: Any) -> Generation:
            raise RuntimeError("out of memory")

    responder = Responder(index, Broken("x"), ResponderPolicy(floor=0.2))
    with pytest.raises(RuntimeError, match="out of memory"):
        responder.respond("default", CHARGED)
    with pytest.raises(RuntimeError, match="out of memory"):
        responder.respond("default", CHARGED, on_token=lambda _: None)


def test_an_empty_ticket_is_refused(index: KnowledgeIndex) -> None:
    with pytest.raises(InputDataError):
        Responder(index).respond("default", "   ")


def test_policy_values_are_checked() -> None:
    with pytest.raises(ConfigError):
        ResponderPolicy(floor=0.9, reuse_similarity=0.5)
    with pytest.raises(ConfigError):
        ResponderPolicy(k=0)
    with pytest.raises(ConfigError):
        ResponderPolicy(min_confidence=1.5)


def test_confidence_is_monotone_and_bounded() -> None:
    assert draft_confidence(0.8, None) == pytest.approx(0.8)
    assert draft_confidence(0.8, -0.5) < draft_confidence(0.8, -0.1) < draft_confidence(0.9, -0.1)
    assert draft_confidence(1.2, 0.3) == 1.0 and draft_confidence(-0.2, -1.0) == 0.0


# --- retrieval ------------------------------------------------------------------------------


def test_search_prefers_the_routed_class_and_falls_back_to_all(index: KnowledgeIndex) -> None:
    text = "invoice charged twice, wrong company address on the subscription invoice"
    plain = index.search("default", text, k=2)
    assert [h.source_id for h in plain] == ["kb:1", "kb:0"]
    shipping_first = index.search("default", text, k=2, label="shipping")
    assert shipping_first[0].label == "shipping" and shipping_first[1].source_id == "kb:1"
    assert index.search("default", text, k=2, label="no-such-class") == plain
    assert all(h.score >= 0.3 for h in index.search("default", text, k=5, floor=0.3))
    assert index.search("default", text, k=5, floor=0.99) == []


def test_the_routed_label_is_used_by_the_responder(index: KnowledgeIndex) -> None:
    generator = FakeGenerator("We will look into it.")
    responder = Responder(index, generator, ResponderPolicy(floor=0.2, k=1))
    text = "wrong address and I was charged twice, where is the parcel tracking update"
    assert responder.respond("default", text).sources == ("kb:3",)  # the closest: shipping
    draft = responder.respond("default", text, decision_label="billing")
    assert draft.sources == ("kb:0",)
    assert generator.calls[-1][0][-1]["content"] == f"Category: billing\nTicket: {text}"


def test_remember_makes_an_answer_searchable_and_an_edit_replaces_it(index: KnowledgeIndex) -> None:
    responder = Responder(index, None, ResponderPolicy(floor=0.2))
    question = "the mobile app crashes when I open settings"
    assert responder.respond("default", question).mode == "none"
    index.remember("default", question, "Please update the app to 4.2.", "T-88", "technical")
    assert index.size("default") == 6
    first = responder.respond("default", question)
    assert (first.mode, first.text, first.sources) == ("reused", "Please update the app to 4.2.", ("T-88",))
    index.remember("default", question, "Update to 4.3; 4.2 still crashes.", "T-88", "technical")
    assert index.size("default") == 6
    assert responder.respond("default", question).text == "Update to 4.3; 4.2 still crashes."
    assert index.forget("default", "T-88") and index.size("default") == 5
    assert not index.forget("default", "T-88")


def test_tenants_do_not_see_each_others_answers() -> None:
    index = KnowledgeIndex(HashEmbedder())
    index.remember("acme", QUESTIONS[0], ANSWERS[0], "a-1")
    assert index.search("globex", QUESTIONS[0]) == []
    assert [h.source_id for h in index.search("acme", QUESTIONS[0])] == ["a-1"]


def test_searches_run_while_answers_are_remembered() -> None:
    index = KnowledgeIndex.from_pairs(QUESTIONS, ANSWERS, IDS, HashEmbedder())
    errors: list[BaseException] = []

    def search() -> None:
        try:
            for _ in range(50):
                hits = index.search("default", QUESTIONS[2], k=3)
                assert hits and hits[0].source_id == "kb:2"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(3)]
    for thread in threads:
        thread.start()
    for i in range(40):
        index.remember("default", f"printer number {i} jams on page {i}", f"Clean roller {i}.", f"p-{i}")
    for thread in threads:
        thread.join()
    assert errors == [] and index.size("default") == 45


# --- prompts --------------------------------------------------------------------------------


def _hit(i: int, score: float = 0.7) -> Hit:
    return Hit(IDS[i], QUESTIONS[i], ANSWERS[i], LABELS[i], score)


def test_prompts_are_short_and_long_examples_are_cut() -> None:
    long_answer = " ".join(f"Step {n} is to check the setting number {n} carefully." for n in range(60))
    hits = [Hit("kb:x", "printer jams " * 80, long_answer, None, 0.8), _hit(0)]
    messages = build_messages("my printer jams " * 100, hits, max_example_chars=300, max_ticket_chars=200)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert len(messages[-1]["content"]) <= len("Ticket: ") + 200
    long_pair = messages[3]["content"], messages[4]["content"]
    assert len(long_pair[0]) + len(long_pair[1]) <= len("Ticket: ") + 300
    assert long_pair[1].endswith(".")  # cut at a sentence end
    assert sum(len(m["content"]) for m in messages) < 2000
    with pytest.raises(InputDataError):
        build_messages(" ", hits)


def test_training_prompts_leave_out_the_pair_itself_and_its_duplicates() -> None:
    questions = [*QUESTIONS, QUESTIONS[0].upper()]  # a duplicate question with another answer
    answers = [*ANSWERS, "A different answer to the same question."]
    labels = [*LABELS, "billing"]
    examples = training_examples(questions, answers, HashEmbedder(), k=2, labels=labels)
    assert len(examples) == len(questions)
    for i, (messages, target) in enumerate(examples):
        assert target == answers[i]
        shown = [m["content"] for m in messages[1:-1]]
        assert f"Ticket: {questions[i]}" not in shown
        assert not any(s.removeprefix("Ticket: ").casefold() == questions[i].casefold() for s in shown)
        assert answers[i] not in shown
        assert messages[-1]["content"] == f"Category: {labels[i]}\nTicket: {questions[i]}"
        assert len(messages) == 6
    # the other billing pair comes first (written last) for a billing ticket
    assert examples[1][0][-2]["content"] == ANSWERS[0]
    # the same builder as at inference
    hits = [_hit(0)]
    assert build_messages(QUESTIONS[1], hits, "billing")[-1] == examples[1][0][-1]


def test_training_prompts_respect_the_floor() -> None:
    examples = training_examples(QUESTIONS, ANSWERS, HashEmbedder(), k=2, floor=0.99)
    assert examples == []


# --- post-processing ----------------------------------------------------------------------

TICKET = "Hi, my order 44556677 never arrived. Can you check? Thanks, Ann"
EXAMPLES = [
    Hit(
        "kb:9",
        "order not arrived",
        "Track it at https://shop.example.com/track or mail help@shop.example.com.",
        None,
        0.7,
    )
]


def test_echo_and_role_markers_are_stripped() -> None:
    raw = f"Assistant: Ticket: {TICKET}\nReply: Sorry, we are checking order 44556677 now."
    assert clean_draft(raw, TICKET, EXAMPLES).text == "Sorry, we are checking order 44556677 now."


def test_the_draft_ends_at_a_stop_token_or_a_new_turn() -> None:
    assert clean_draft("We are on it.<|im_end|>junk", TICKET, EXAMPLES).text == "We are on it."
    assert clean_draft("We are on it.\nCustomer: great\nAgent: ok", TICKET, EXAMPLES).text == "We are on it."
    assert clean_draft("We are on it. Ticket: next one", TICKET, EXAMPLES).text == "We are on it."


def test_invented_identifiers_become_placeholders_and_are_counted() -> None:
    raw = (
        "Your order 44556677 was found. The replacement order 99887766 ships today; "
        "see https://evil.example.net/x or https://shop.example.com/track. Write to help@shop.example.com "
        "or refunds@evil.example.net, case REF-20931."
    )
    cleaned = clean_draft(raw, TICKET, EXAMPLES)
    assert cleaned.invented == (
        "99887766",
        "https://evil.example.net/x",
        "refunds@evil.example.net",
        "REF-20931",
    )
    assert cleaned.text == (
        "Your order 44556677 was found. The replacement order {{order number}} ships today; "
        "see {{URL}} or https://shop.example.com/track. Write to help@shop.example.com "
        "or {{email}}, case {{ticket id}}."
    )
    allowed = [TICKET, EXAMPLES[0].question, EXAMPLES[0].answer]
    assert invented_identifiers(raw, allowed) == list(cleaned.invented)


def test_identifiers_compare_by_their_digits_and_placeholders_are_kept() -> None:
    assert invented_identifiers("order 4455-6677 and {{Order Number}} in 2024", [TICKET]) == []
    assert invented_identifiers("call 0800 123 and pay $10000", []) == []
    assert invented_identifiers("order #123456", ["order 1234567"]) == ["#123456"]
    cleaned = clean_draft("It ships on 2031-04-02.", "when does it ship? ordered 2031-03-30", [])
    assert (cleaned.text, cleaned.invented) == ("It ships on {{date}}.", ("2031-04-02",))


def test_the_length_limit_ends_at_a_sentence() -> None:
    raw = "We found your parcel. It is at the depot. A courier brings it tomorrow morning. " * 3
    cleaned = clean_draft(raw, TICKET, EXAMPLES, max_chars=70)
    assert cleaned.text == "We found your parcel. It is at the depot."
    assert cleaned.shortened
    one_long = clean_draft("word " * 100, TICKET, EXAMPLES, max_chars=40)
    assert len(one_long.text) <= 40 and one_long.text.endswith("…")


def test_a_cut_off_generation_loses_its_unfinished_sentence() -> None:
    raw = "We found your parcel. The courier will bring it on"
    assert clean_draft(raw, TICKET, EXAMPLES, cut_off=True).text == "We found your parcel."
    assert clean_draft(raw, TICKET, EXAMPLES).text == raw


def test_a_list_is_never_cut_after_an_item_number() -> None:
    raw = "Please follow these steps:\n\n1. Log in to {{Website Name}}.\n2. Open {{Order Details}}.\n3. Click"
    assert clean_draft(raw, TICKET, EXAMPLES, cut_off=True).text == (
        "Please follow these steps:\n\n1. Log in to {{Website Name}}.\n2. Open {{Order Details}}."
    )
    assert clean_draft(raw, TICKET, EXAMPLES, max_chars=75).text == (
        "Please follow these steps:\n\n1. Log in to {{Website Name}}."
    )
    hit = Hit(
        "kb:1", "cancel my order", raw.replace("Click", "Click {{Cancel Order}} and confirm."), None, 0.8
    )
    shown = build_messages("cancel order", [hit], max_example_chars=90)[2]["content"]
    assert shown.endswith("{{Website Name}}.")


def test_repeated_sentences_are_collapsed() -> None:
    raw = (
        "We are sorry for the delay. We are sorry for the delay. It ships today.\nWe are sorry for the delay."
    )
    assert clean_draft(raw, TICKET, EXAMPLES).text == "We are sorry for the delay. It ships today."


# --- LangChain ----------------------------------------------------------------------------


def test_any_langchain_chat_model_can_replace_the_generator(index: KnowledgeIndex) -> None:
    hosted = FakeListChatModel(responses=["Assistant: We refunded order 55555555 today. Customer: thx"])
    responder = Responder(index, hosted, ResponderPolicy(floor=0.2))
    assert responder.chat_model is hosted
    draft = responder.respond("default", CHARGED)
    assert draft.mode == "generated"
    assert draft.text == "We refunded order {{order number}} today."
    assert draft.sources[0] == "kb:0"
    best = index.best_similarity("default", CHARGED)
    assert best is not None and draft.confidence == pytest.approx(best)  # no logprobs: retrieval only
    pieces: list[str] = []
    streamed = responder.respond("default", CHARGED, on_token=pieces.append)
    assert streamed.text == draft.text and "".join(pieces) == hosted.responses[0]


def test_the_chain_runs_retriever_and_chat_model_as_langchain_runs(index: KnowledgeIndex) -> None:
    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.events: list[str] = []

        def on_retriever_start(self, serialized: Any, query: str, **kwargs: Any) -> None:
            self.events.append("retriever")

        def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
            self.events.append("chat_model")

        def on_llm_new_token(self, token: str | list[str | dict[str, Any]], **kwargs: Any) -> None:
            self.events.append("token")

    recorder = Recorder()
    generator = FakeGenerator("We refunded it. All good.")
    Responder(index, generator, ResponderPolicy(floor=0.2)).respond(
        "default", CHARGED, config={"callbacks": [recorder]}
    )
    assert recorder.events[:2] == ["retriever", "chat_model"] and "token" in recorder.events


def test_the_retriever_returns_documents_with_sources_and_scores(index: KnowledgeIndex) -> None:
    retriever = KnowledgeRetriever(index=index, k=2)
    docs = retriever.invoke(QUESTIONS[2])
    assert isinstance(docs[0], Document)
    assert docs[0].metadata["source_id"] == "kb:2" and docs[0].metadata["answer"] == ANSWERS[2]
    assert docs[0].metadata["score"] == pytest.approx(1.0)
    routed = retriever.invoke(QUESTIONS[2], label="returns")
    assert routed[0].metadata["label"] == "returns"


def test_the_generator_is_a_chat_model_that_invokes_and_streams() -> None:
    generator = FakeGenerator("One two three.", mean_logprob=-0.5, new_tokens=40)
    model = DeskpilotChatModel(generator=generator, max_new_tokens=40)
    reply = model.invoke([SystemMessage(content="be brief"), HumanMessage(content="hi")])
    assert reply.text == "One two three."
    assert reply.response_metadata["mean_logprob"] == -0.5
    assert reply.response_metadata["finish_reason"] == "length"
    assert generator.calls[0][0] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    chunks = list(model.stream([HumanMessage(content="hi")]))
    assert [c.text for c in chunks if c.text] == ["One ", "two ", "three."]
    assert chunks[-1].response_metadata["adapter_version"] == "gen-v7"
