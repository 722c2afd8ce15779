"""The reader's training mix, built reproducibly from the SQuAD-format sets in
``shared/datasets`` (credits and licenses in the README and the model card).

Held out for evaluation, by article: every tenth article of PIAF, of XQuAD
(in every language, since XQuAD is parallel) and of SQuAD-es v2.0, and, with
squad-en in the mix, every tenth article of SQuAD v2.0 dev. XQuAD, SQuAD-es,
SQuAD-it and squad-en hold the same SQuAD dev articles in several languages
(their questions share ids), so every article is known by its English SQuAD
title, and an article held out in one language is kept out of training in
all of them.
"""
from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from rag.evaluation.squad import QAExample, load_squad
from rag.training.negatives import load_entity_finder
from rag.training.negatives import swap_negatives as with_values_swapped
from rag.training.splits import held_out

XQUAD_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
CROSS_LINGUAL_CONTEXTS = ("de", "es", "ro", "tr", "vi")  # Latin-script contexts for English questions


SQUAD_EN = ("squad-en/dev-v1.1.json.gz", "squad-en/dev-v2.0.json.gz")
SQUAD_ES_V2 = "squad-es/dev-v2.0-es_small.json"  # SQuAD v2.0 dev machine-translated to Spanish (its ids)


def load_squad_en(data_dir: Path) -> tuple[list[QAExample], list[QAExample]]:
    """SQuAD v1.1 and v2.0 dev, each empty when its file is not there (then
    no article of the other sets is linked through it)."""
    v11, v20 = (load_squad(data_dir / name) if (data_dir / name).exists() else [] for name in SQUAD_EN)
    return v11, v20


def source_id(example: QAExample) -> str:
    """The id of the question an example was made from (its copies add "-tag" suffixes)."""
    return example.id.split("-", 1)[0]


def squad_en_examples(v11: list[QAExample], v20: list[QAExample]) -> list[QAExample]:
    """SQuAD v2.0 dev (answerable and adversarial unanswerable questions) and
    the v1.1 dev questions it does not repeat: v2.0's answerable questions
    are v1.1's on the same articles, so each is counted once. An article keeps
    one number across both files."""
    in_v20 = {(e.question, e.context) for e in v20}
    numbers = {e.title: e.article_index for e in v20}
    for e in v11:
        numbers.setdefault(e.title, len(numbers))
    return v20 + [replace(e, article_index=numbers[e.title]) for e in v11 if (e.question, e.context) not in in_v20]


def unanswerable_copies(
    examples: list[QAExample], pool: list[QAExample], share: float, rng: random.Random, tag: str,
    same_article: bool = False,
) -> list[QAExample]:
    """Unanswerable copies of a ``share`` of the questions, each paired with a
    paragraph of another article or, with ``same_article``, another paragraph
    of its own article (on topic, so harder to refuse). A paragraph that
    happens to contain a gold answer is skipped."""
    paragraphs: dict[int, list[str]] = {}
    for other in pool:
        siblings = paragraphs.setdefault(other.article_index, [])
        if other.context not in siblings:
            siblings.append(other.context)
    negatives = []
    for example in examples:
        if rng.random() >= share:
            continue
        if same_article:
            siblings = [c for c in paragraphs.get(example.article_index, []) if c != example.context]
            if not siblings:
                continue
            context = rng.choice(siblings)
        else:
            other = rng.choice(pool)
            if other.article_index == example.article_index:
                continue
            context = other.context
        if any(text.lower() in context.lower() for text, _ in example.answers):
            continue
        negatives.append(replace(example, id=f"{example.id}-{tag}", context=context, answers=[]))
    return negatives


def load_mix(
    data_dir: str | Path, seed: int = 13, french_repeats: int = 1, same_article_negatives: float = 0.0,
    squad_en: bool = False, swap_negatives: float = 0.0,
) -> tuple[list[QAExample], dict[str, list[QAExample]]]:
    """Training examples and the held-out evaluation sets, deterministically.

    ``french_repeats`` shows the French set (PIAF, the only native French
    one) that many times per epoch: French is the documents' main language.
    ``same_article_negatives`` adds that share of PIAF and English XQuAD
    questions again, paired with another paragraph of their own article.
    ``squad_en`` adds the English SQuAD dev sets, with v2.0's adversarial
    unanswerable questions, and holds a tenth of v2.0's articles out.
    ``swap_negatives`` adds that share of the PIAF and English training
    questions with a value swapped for another of their article
    (:mod:`rag.training.negatives`; needs the ``train`` extra).
    """
    data_dir = Path(data_dir)
    rng = random.Random(seed)
    train: list[QAExample] = []
    evaluation: dict[str, list[QAExample]] = {}
    v11, v20 = load_squad_en(data_dir)
    if squad_en and not v20:
        raise FileNotFoundError(f"{data_dir / SQUAD_EN[1]} is missing")
    # The English SQuAD article title of every question id: translations share the ids.
    titles = {e.id: e.title for e in (*v11, *v20)}
    held_titles: set[str] = set()

    piaf = load_squad(data_dir / "piaf" / "piaf-v1.0.json")
    train += [e for e in piaf if not held_out(e)] * french_repeats
    evaluation["piaf"] = [e for e in piaf if held_out(e)]

    xquad = {lang: load_squad(data_dir / "xquad" / f"xquad.{lang}.json") for lang in XQUAD_LANGUAGES}
    held_ids = {e.id for e in xquad["en"] if held_out(e)}
    squad_es_v2 = load_squad(data_dir / SQUAD_ES_V2)
    squad_en_v2 = v20 if squad_en else []
    held_titles |= {titles.get(e.id) for e in xquad["en"] if held_out(e)}
    held_titles |= {titles.get(e.id) for e in squad_es_v2 if held_out(e)}
    held_titles |= {e.title for e in squad_en_v2 if held_out(e)}
    held_titles.discard(None)

    for lang, examples in xquad.items():
        train += [e for e in examples if not held_out(e)]
    evaluation["xquad-en"] = [e for e in xquad["en"] if held_out(e)]

    by_id = {lang: {e.id: e for e in examples} for lang, examples in xquad.items()}
    cross = []
    for example in xquad["en"]:
        if held_out(example):
            continue
        for lang in rng.sample(CROSS_LINGUAL_CONTEXTS, 2):
            foreign = by_id[lang].get(example.id)
            if foreign is not None:
                cross.append(replace(foreign, id=f"{example.id}-en-{lang}", question=example.question))
    train += cross

    def leaks(examples: list[QAExample]) -> set[int]:
        return {e.article_index for e in examples if e.id in held_ids}

    for name in ("squad-es/dev-v1.1-es_small.json", "squad-it/SQuAD_it-test.json.gz"):
        examples = load_squad(data_dir / name)
        leaked = leaks(examples)
        train += [e for e in examples if e.article_index not in leaked]

    leaked = leaks(squad_es_v2)
    train += [e for e in squad_es_v2 if not held_out(e) and e.article_index not in leaked]
    evaluation["squad-es-v2"] = [e for e in squad_es_v2 if held_out(e) and e.article_index not in leaked]

    if squad_en:
        train += [e for e in squad_en_examples(v11, v20) if e.title not in held_titles]
        evaluation["squad-en-v2"] = [e for e in squad_en_v2 if held_out(e)]

    train_piaf = [e for e in piaf if not held_out(e)]
    train_en = [e for e in xquad["en"] if not held_out(e)]
    train += unanswerable_copies(train_piaf, train_piaf, 0.25, rng, "neg") * french_repeats
    train += unanswerable_copies(train_en, train_en, 0.15, rng, "neg")
    train += unanswerable_copies(cross, cross, 0.15, rng, "neg")
    evaluation["piaf-negatives"] = unanswerable_copies(evaluation["piaf"], evaluation["piaf"], 1.0, rng, "neg")
    evaluation["xquad-en-negatives"] = unanswerable_copies(
        evaluation["xquad-en"], evaluation["xquad-en"], 1.0, rng, "neg"
    )
    # Separate generators keep the mix above identical whatever the options below.
    if same_article_negatives:
        hard = random.Random(seed + 1)
        for examples in (train_piaf, train_en):
            train += unanswerable_copies(examples, examples, same_article_negatives, hard, "sib", same_article=True)
    if swap_negatives:
        finder, swaps = load_entity_finder(), random.Random(seed + 3)
        english = [e for e in squad_en_examples(v11, v20) if e.title not in held_titles] if squad_en else train_en
        train += with_values_swapped(train_piaf, finder, swap_negatives, swaps) * french_repeats
        train += with_values_swapped(english, finder, swap_negatives, swaps)
    sibling = random.Random(seed + 2)
    for name, pool in (("piaf", piaf), ("xquad-en", xquad["en"])):
        evaluation[f"{name}-same-article-negatives"] = unanswerable_copies(
            evaluation[name], pool, 1.0, sibling, "sib", same_article=True
        )
    # Last, so that the draws above, and the evaluation sets they make, do not
    # depend on it: no question or paragraph of an article held out in one
    # language trains in another (an unanswerable copy may have borrowed one).
    held_contexts = {e.context for examples in (*xquad.values(), squad_es_v2, squad_en_v2) for e in examples
                     if titles.get(e.id) in held_titles}
    train = [e for e in train if titles.get(source_id(e)) not in held_titles and e.context not in held_contexts]
    rng.shuffle(train)
    return train, evaluation


def english_questions_on(examples: list[QAExample], data_dir: str | Path) -> list[QAExample]:
    """Each translated SQuAD v2.0 example (SQuAD-es v2.0 shares its ids) with the English question
    it was translated from: an English question on a document in another language, as a user asks
    of a French one, with v2.0's adversarial unanswerable questions among them."""
    english = {e.id: e.question for e in load_squad(Path(data_dir) / SQUAD_EN[1])}  # v2.0 alone
    return [replace(e, id=f"{e.id}-en", question=english[e.id]) for e in examples if e.id in english]


def french_and_english(examples: list[QAExample], data_dir: str | Path) -> list[QAExample]:
    """Only the examples in the documents' two languages: PIAF (French) and
    every English question (XQuAD-en, English questions on other languages'
    paragraphs), with their unanswerable copies (swapped-value negatives are
    made from PIAF and English questions only)."""
    data_dir = Path(data_dir)
    english = {e.question for e in load_squad(data_dir / "xquad" / "xquad.en.json")}
    english |= {e.question for examples in load_squad_en(data_dir) for e in examples}
    french = {e.id for e in load_squad(data_dir / "piaf" / "piaf-v1.0.json")}
    return [e for e in examples if e.question in english or source_id(e) in french or e.id.endswith("-swap")]
