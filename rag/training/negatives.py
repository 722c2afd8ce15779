"""On-topic unanswerable questions, made the way SQuAD 2.0's writers made
theirs: an answerable question's entity, date or number is swapped for
another one of the same kind that its article mentions elsewhere, so the
paragraph no longer answers it while the old answer, a plausible wrong span,
is still there.

Entities come from spaCy's French pipeline (``fr-core-news-md``, the optional
``train`` extra), which also finds many in English questions; years and other
numbers from a pattern. The question keeps its paragraph; the value put in
must not appear in that paragraph (else it might answer the new question),
and the value taken out must (so the question was about it).

A second kind keeps the question and takes the answer away: each sentence
holding a gold answer is cut from the paragraph, which stays on topic, with
the other values of the answer's kind (an amount, a person) that a reader is
tempted by when the document does not say.
"""
from __future__ import annotations

import argparse
import json
import random
import re
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from rag.evaluation.squad import QAExample, load_squad, normalize_answer
from rag.training.splits import held_out
from rag.verifier.inputs import SENTENCE_END

YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")
NUMBER = re.compile(r"\b\d+(?:[.,]\d+)?\b")
ENTITY_KINDS = ("PER", "LOC", "ORG", "MISC")
# What a paragraph keeps of itself once its answer is cut out, at least: less is no longer on topic.
MIN_KEPT_CHARS = 150
# Words that may join the capitalized words of a name ("Banque de France", "Gulf of Mexico").
CONNECTORS = {"de", "du", "des", "la", "le", "les", "d'", "d’", "l'", "l’", "of", "the", "and", "et", "y", "von", "van"}


def looks_like_a_name(surface: str) -> bool:
    """A short run of capitalized words (and connectors): not a clause that the
    tagger took for an entity, nor a name with a common noun before it."""
    words = surface.split()
    return (0 < len(words) <= 5 and surface[0].isupper()
            and all(w[0].isupper() or w[0].isdigit() or w.lower() in CONNECTORS for w in words))


def load_entity_finder():
    """spaCy's French pipeline, with only what finds entities."""
    try:
        import spacy

        return spacy.load("fr_core_news_md", disable=["parser", "lemmatizer", "morphologizer", "attribute_ruler"])
    except (ImportError, OSError) as error:
        raise RuntimeError("the negative generator needs the training extra: pip install -e '.[train]'") from error


def values(text: str, entities: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(kind, surface) of each swappable value of a text: named entities, years, other numbers."""
    found = [(kind, surface.strip()) for surface, kind in entities
             if kind in ENTITY_KINDS and len(surface.strip()) > 1 and looks_like_a_name(surface.strip())]
    years = {m.group() for m in YEAR.finditer(text)}
    found += [("YEAR", year) for year in sorted(years)]
    found += [("NUMBER", m.group()) for m in NUMBER.finditer(text) if m.group() not in years]
    return list(dict.fromkeys(found))


def value_spans(text: str, entities: list[tuple[int, int, str]]) -> list[tuple[str, int, int]]:
    """(kind, start, end) of each value of ``text``, the kinds :func:`values`
    finds, with where they are: entities that look like names, years, other numbers."""
    found = [(kind, start, end) for start, end, kind in entities
             if kind in ENTITY_KINDS and looks_like_a_name(text[start:end])]
    found += [("YEAR" if YEAR.fullmatch(m.group()) else "NUMBER", m.start(), m.end()) for m in NUMBER.finditer(text)]
    return found


def swap_negatives(examples: list[QAExample], finder, share: float, rng: random.Random,
                   tag: str = "swap") -> list[QAExample]:
    """Unanswerable questions from a ``share`` of the answerable ``examples``
    (each with its own paragraph): one value of the question swapped for a
    value of the same kind found elsewhere in its article, not in its paragraph."""
    answerable = [e for e in examples if e.answers]
    chosen = [e for e in answerable if rng.random() < share]
    if not chosen:
        return []
    paragraphs: dict[int, list[str]] = defaultdict(list)
    for example in answerable:
        if example.context not in paragraphs[example.article_index]:
            paragraphs[example.article_index].append(example.context)
    needed = {e.article_index for e in chosen}
    texts = [p for article in sorted(needed) for p in paragraphs[article]]
    owner = [article for article in sorted(needed) for _ in paragraphs[article]]
    pools: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for article, paragraph, document in zip(owner, texts, finder.pipe(texts, batch_size=32)):
        for kind, surface in values(paragraph, [(e.text, e.label_) for e in document.ents]):
            pools[article][kind].add(surface)
    negatives = []
    for example, document in zip(chosen, finder.pipe([e.question for e in chosen], batch_size=64)):
        in_question = values(example.question, [(e.text, e.label_) for e in document.ents])
        rng.shuffle(in_question)
        for kind, surface in in_question:
            if surface not in example.context:
                continue  # the question is not about a value of its paragraph
            at = example.question.index(surface)
            elided = at > 0 and example.question[at - 1] in "'’"
            candidates = sorted(
                value for value in pools[example.article_index][kind]
                if value not in example.context and value.lower() not in example.question.lower()
                and surface.lower() not in value.lower()
                and (not elided or value[0].lower() in "aeiouyhàâéèêîôû")  # "d'Armagh" stays "d'…" only before a vowel
            )
            if candidates:
                new = rng.choice(candidates)
                question = example.question.replace(surface, new, 1)
                negatives.append(replace(example, id=f"{example.id}-{tag}", question=question, answers=[]))
                break
    return negatives


def answer_removed(examples: list[QAExample], share: float, rng: random.Random,
                   tag: str = "cut") -> list[QAExample]:
    """Unanswerable copies of a ``share`` of the answerable ``examples``: the
    same question on its paragraph without the sentences that hold a gold
    answer. A copy is skipped when too little of the paragraph is left, or
    when what is left still names most of an answer's words (the answer said
    twice), since it might then answer the question."""
    negatives = []
    for example in examples:
        if not example.answerable or rng.random() >= share:
            continue
        kept = without_answer_sentences(example)
        if kept is None or len(kept) < MIN_KEPT_CHARS or any(names_most_of(kept, text) for text, _ in example.answers):
            continue
        negatives.append(replace(example, id=f"{example.id}-{tag}", context=kept, answers=[]))
    return negatives


def without_answer_sentences(example: QAExample) -> str | None:
    """The paragraph without each sentence a gold answer overlaps (None when none or all do)."""
    context = example.context
    bounds = [0, *(m.end() for m in SENTENCE_END.finditer(context)), len(context)]
    sentences = [(start, end) for start, end in zip(bounds, bounds[1:]) if context[start:end].strip()]
    answers = [(start, start + len(text)) for text, start in example.answers if text]
    kept = [context[start:end].strip() for start, end in sentences
            if all(end <= a or start >= b for a, b in answers)]
    if not kept or len(kept) == len(sentences):
        return None
    return " ".join(kept)


def names_most_of(text: str, answer: str) -> bool:
    """Half of the answer's words or more (those of three letters or more, and numbers) are words of ``text``."""
    words = set(normalize_answer(text).split())
    answer_words = normalize_answer(answer).split()
    content = [w for w in answer_words if len(w) > 2 or w.isdigit()] or answer_words
    return 2 * sum(w in words for w in content) >= len(content)


def write_squad(examples: list[QAExample], path: str | Path) -> None:
    """Examples as a SQuAD v2.0 file (an article per title, a paragraph per context)."""
    articles: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for e in examples:
        articles[e.title][e.context].append({
            "id": e.id, "question": e.question, "is_impossible": not e.answers,
            "answers": [{"text": text, "answer_start": start} for text, start in e.answers],
        })
    data = [{"title": title, "paragraphs": [{"context": c, "qas": qas} for c, qas in paragraphs.items()]}
            for title, paragraphs in articles.items()]
    Path(path).write_text(json.dumps({"version": "v2.0", "data": data}, ensure_ascii=False), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write swapped-value unanswerable questions as a SQuAD v2.0 file.")
    parser.add_argument("file", help="a SQuAD-format file of answerable questions")
    parser.add_argument("--out", required=True)
    parser.add_argument("--held-out", action="store_true", help="only the articles the built-in reader never saw")
    parser.add_argument("--share", type=float, default=1.0, help="share of the questions to make a negative of")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    examples = [e for e in load_squad(args.file) if not args.held_out or held_out(e)]
    negatives = swap_negatives(examples, load_entity_finder(), args.share, random.Random(args.seed))
    write_squad(negatives, args.out)
    print(f"{len(negatives)} unanswerable questions from {len(examples)} in {args.out}")


if __name__ == "__main__":
    main()
