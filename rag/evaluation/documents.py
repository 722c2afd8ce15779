"""End-to-end evaluation on SQuAD-format files read as documents: each
article (its paragraphs joined) becomes one document with its own index, and
every question goes through the whole pipeline (chunking, hybrid retrieval,
the reader across passages, abstention), as a user's own document would.

``--held-out`` keeps only the articles the built-in reader never saw in
training, so the figures measure what users get on new documents; the
pipeline's cross-passage settings (``similarity_weight``) were chosen this way.
"""
from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.answer import Pipeline
from rag.documents import Document
from rag.evaluation.reader import percentiles_ms
from rag.evaluation.squad import QAExample, best_scores, load_squad
from rag.training.splits import held_out


def load_examples(path: str | Path, held_out_only: bool, questions_from: str | Path | None) -> list[QAExample]:
    """The file's questions; ``questions_from`` swaps in the questions of a
    parallel file by id (English questions on Spanish articles with XQuAD)."""
    examples = load_squad(path)
    if held_out_only:
        examples = [e for e in examples if held_out(e)]
    if questions_from:
        other = {e.id: e.question for e in load_squad(questions_from)}
        examples = [replace(e, question=other[e.id]) for e in examples if e.id in other]
    if not examples:
        raise ValueError(f"no questions to evaluate in {path}")
    return examples


def article_documents(examples: list[QAExample]) -> tuple[dict[int, list[QAExample]], dict[int, Document],
                                                        dict[str, int]]:
    """Each article as one document (its paragraphs joined), with where each paragraph starts in it."""
    by_article: dict[int, list[QAExample]] = defaultdict(list)
    for example in examples:
        by_article[example.article_index].append(example)
    documents, offsets = {}, {}
    for article, questions in by_article.items():
        paragraphs = list(dict.fromkeys(q.context for q in questions))
        starts = np.cumsum([0] + [len(p) + 2 for p in paragraphs[:-1]]).tolist()
        offsets.update(zip(paragraphs, starts))
        documents[article] = Document(id=f"article-{article}", title=questions[0].title, text="\n\n".join(paragraphs))
    return by_article, documents, offsets


def evaluate_documents(pipeline: Pipeline, examples: list[QAExample], one_collection: bool = False) -> dict:
    """EM/F1 on answerable questions (an abstention scores 0), no-answer
    accuracy on unanswerable ones, recall@k (the gold span inside a passage
    read) and latency. Each article has its own index, or, with
    ``one_collection``, all articles share one and each question is searched
    across all of them (then document recall@k: a passage of the question's
    own article among those read)."""
    by_article, documents, offsets = article_documents(examples)
    em, f1, recall, document_recall, abstained, seconds = [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as scratch:
        shared = pipeline.for_documents(list(documents.values()), Path(scratch) / "all") if one_collection else None
        for article, questions in by_article.items():
            article_pipeline = shared or pipeline.for_documents([documents[article]], Path(scratch) / str(article))
            article_pipeline.warm_up()  # builds the index, outside the timings
            for question in questions:
                began = time.perf_counter()
                answer = article_pipeline.run(question.question)
                seconds.append(time.perf_counter() - began)
                if not question.answerable:
                    abstained.append(not answer.answered)
                    continue
                e, f = best_scores(answer.text, [t for t, _ in question.answers])
                em.append(e)
                f1.append(f)
                offset = offsets[question.context]
                own = [s for s in answer.sources if s.doc_id == documents[article].id]
                document_recall.append(bool(own))
                recall.append(any(
                    s.start <= offset + start and offset + start + len(t) <= s.end
                    for t, start in question.answers for s in own
                ))
    k = pipeline.settings.top_k
    result = {
        "documents": len(by_article),
        "collections": 1 if one_collection else len(by_article),
        "answerable": len(f1),
        "em": float(np.mean(em)) if em else None,
        "f1": float(np.mean(f1)) if f1 else None,
        f"recall@{k}": float(np.mean(recall)) if recall else None,
    }
    if one_collection and document_recall:
        result[f"document_recall@{k}"] = float(np.mean(document_recall))
    if abstained:
        result["unanswerable"] = len(abstained)
        result["no_answer_accuracy"] = float(np.mean(abstained))
    result.update(percentiles_ms(seconds, "latency", digits=None))
    return result
