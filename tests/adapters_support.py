"""Data and helpers shared by the adapter tests (a module, not fixtures, so tests can import them).

Everything here is offline and tiny: a WordPiece vocabulary that covers the synthetic ticket
texts, a random 2-layer BERT, and word lists that make the labels linearly separable.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from deskpilot.adapters.classifier import ClassifierRecipe, TrainResult
from deskpilot.adapters.registry import AdapterCard

# peft 0.21 reads ``model.is_gradient_checkpointing`` in ``PeftModel.__init__``; transformers 5
# deprecated that property. Third-party, harmless, and raised on every PeftModel construction.
PEFT_GC_WARNING = "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
peft_warning = pytest.mark.filterwarnings(PEFT_GC_WARNING)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# task "intent": three labels, each with its own words
INTENT_WORDS: dict[str, list[str]] = {
    "access": [
        "password",
        "login",
        "account",
        "locked",
        "reset",
        "username",
        "permission",
        "badge",
        "token",
        "expired",
    ],
    "billing": [
        "invoice",
        "refund",
        "charge",
        "payment",
        "card",
        "receipt",
        "price",
        "subscription",
        "bill",
        "overcharged",
    ],
    "network": [
        "wifi",
        "router",
        "vpn",
        "internet",
        "connection",
        "latency",
        "dns",
        "cable",
        "signal",
        "bandwidth",
    ],
}
# task "device": a second task on the same base with labels of its own
DEVICE_WORDS: dict[str, list[str]] = {
    "laptop": ["laptop", "keyboard", "screen", "battery", "charger", "trackpad", "hinge", "webcam"],
    "printer": ["printer", "toner", "paper", "jam", "tray", "scanner", "ink", "cartridge"],
}
FILLER = [
    "the",
    "my",
    "our",
    "is",
    "was",
    "not",
    "and",
    "please",
    "help",
    "with",
    "since",
    "today",
    "again",
    "can",
    "you",
    "a",
    "it",
    "this",
    "i",
    "we",
]
# more ordinary helpdesk words, so the vocabulary looks like a (very small) real one
EXTRA = [
    "about",
    "after",
    "all",
    "also",
    "am",
    "an",
    "any",
    "are",
    "as",
    "at",
    "be",
    "been",
    "before",
    "but",
    "by",
    "could",
    "day",
    "did",
    "do",
    "does",
    "done",
    "down",
    "each",
    "email",
    "error",
    "even",
    "every",
    "few",
    "file",
    "find",
    "first",
    "for",
    "from",
    "get",
    "give",
    "go",
    "good",
    "had",
    "has",
    "have",
    "he",
    "her",
    "here",
    "him",
    "his",
    "how",
    "if",
    "in",
    "into",
    "issue",
    "just",
    "know",
    "last",
    "like",
    "look",
    "make",
    "many",
    "me",
    "more",
    "most",
    "much",
    "need",
    "new",
    "no",
    "now",
    "of",
    "off",
    "on",
    "one",
    "only",
    "or",
    "other",
    "out",
    "over",
    "people",
    "problem",
    "queue",
    "request",
    "right",
    "said",
    "same",
    "see",
    "she",
    "should",
    "so",
    "some",
    "still",
    "such",
    "take",
    "team",
    "than",
    "that",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "thing",
    "think",
    "ticket",
    "time",
    "to",
    "too",
    "two",
    "up",
    "urgent",
    "us",
    "use",
    "user",
    "very",
    "want",
    "way",
    "well",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "why",
    "will",
    "work",
    "would",
    "year",
    "yes",
    "yet",
    "your",
    "hello",
    "thanks",
    "regards",
    "monday",
    "friday",
    "morning",
    "office",
    "remote",
    "server",
    "update",
    "install",
    "software",
    "laptop",
    "desk",
    "phone",
    "call",
    "meeting",
    "manager",
    "sales",
    "support",
]
PIECES = ["##s", "##es", "##ed", "##ing", "##er", "##ly", "##ion", "##able"]
CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:;()")


def vocabulary() -> list[str]:
    words = {w for ws in INTENT_WORDS.values() for w in ws}
    words |= {w for ws in DEVICE_WORDS.values() for w in ws}
    words |= set(FILLER) | set(EXTRA) | set(CHARS)
    words |= {f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"}
    words |= set(PIECES)
    return SPECIAL + sorted(words)


def build_tiny_bert(folder: Path) -> Path:
    """A random 2-layer BERT with a matching WordPiece tokenizer, saved like a hub model."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 ignores ``vocab_file=`` here (every token becomes [UNK]); pass the mapping
    tokenizer = BertTokenizerFast(vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(str(folder))
    return folder


def make_texts(words: dict[str, list[str]], per_label: int, seed: int) -> tuple[list[str], list[str]]:
    """Short tickets: three label words and three filler words, shuffled; labels interleaved."""
    rng = random.Random(seed)
    texts: list[str] = []
    labels: list[str] = []
    for i in range(per_label):
        for label in sorted(words):
            tokens = rng.sample(words[label], 3) + rng.sample(FILLER, 3)
            rng.shuffle(tokens)
            text = " ".join(tokens)
            texts.append(text.capitalize() + ("?" if i % 3 == 0 else "."))
            labels.append(label)
    return texts, labels


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread, restored after (train_classifier(threads=1) sets it globally)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def small_recipe(**overrides: Any) -> ClassifierRecipe:
    values: dict[str, Any] = {
        "epochs": 2,
        "batch_size": 16,
        "max_length": 32,
        "min_val_rows": 5,
        "val_fraction": 0.2,
    }
    values.update(overrides)
    return ClassifierRecipe(**values)


def copy_adapter(source: Path, target: Path) -> Path:
    """Registry.register moves files; tests register copies so session fixtures stay intact."""
    shutil.copytree(source, target)
    return target


def read_head(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "head.safetensors"))


@dataclass
class Trained:
    """A finished training run, plus what the in-memory model said about held-out texts."""

    result: TrainResult
    texts: list[str]
    labels: list[str]
    heldout: list[str]
    heldout_labels: list[str]
    expected: torch.Tensor  # calibrated probabilities for ``heldout``, from the training-time model

    @property
    def directory(self) -> Path:
        return self.result.directory

    @property
    def card(self) -> AdapterCard:
        return self.result.card

    def expected_labels(self) -> list[str]:
        return [self.card.labels[int(i)] for i in self.expected.argmax(-1)]


# --- a tiny causal LM (responder unit tests) ------------------------------------------
TINY_LM_SENTENCES = [
    "Reset your password from the login page and sign in again.",
    "Restart the router, then reconnect to the office wifi.",
    "The invoice was sent twice; we refunded the second charge.",
    "Your VPN profile expired. Import the new profile and restart the client.",
    "Please describe the error message and attach a screenshot.",
    "My laptop battery drains fast since the update. What can I do?",
    "system user assistant You are a helpdesk assistant. Answer the ticket.",
]


def build_tiny_lm(folder: Path) -> Path:
    """A random 2-layer Llama with a byte-level BPE tokenizer trained here, ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from deskpilot.adapters.catalog import CHATML_TEMPLATE

    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(TINY_LM_SENTENCES * 3, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder
