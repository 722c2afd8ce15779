"""The ``rag`` command: set up, index, ask, evaluate and benchmark."""
from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from rag.answer.excerpt import ellipses, excerpt_bounds
from rag.answer.wording import percent, quoted_note, words_for
from rag.embedding.materialize import materialize_embedder
from rag.index import CollectionBusy, StorageError, StoreUnavailable
from rag.settings import BUILTIN, PRECISIONS, READER_MIN_CONFIDENCE, RUNTIMES, Settings


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        index_dir=args.index_dir, cache_dir=args.cache_dir, embedder=args.embedder, reader=args.reader,
        top_k=args.top_k, min_confidence=args.min_confidence, similarity_weight=args.similarity_weight,
        verified_spans=args.verified_spans, runtime=args.runtime, precision=args.precision, collection=args.collection,
        store=args.store,
    )


def make_pipeline(args: argparse.Namespace):
    """The pipeline over the collection chosen (``--collection``), or over the
    ``--document`` files alone, in a collection of their own."""
    from rag.answer import Pipeline
    from rag.documents import read_document

    if args.documents and args.collection:
        raise ValueError("--document answers from the given files alone; to put them in a collection, "
                         f"use: rag add FILE --collection {args.collection}")
    settings = settings_from(args)
    documents = [read_document(p, limits=settings.read_limits()) for p in args.documents] if args.documents else None
    return Pipeline(settings, documents)


class ProgressBar:
    """A progress bar on the terminal (stderr) for indexing; silent when the output is not a terminal."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, done: int, total: int, what: str) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, unit="passage", desc="Indexing", file=sys.stderr, dynamic_ncols=True)
        self.bar.set_postfix_str(what[:40], refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def marked_passage(answer) -> str:
    """The source passage around the answer, the span between » « markers (terminal output)."""
    source = answer.sources[answer.source_index]
    start, end = answer.start - source.start, answer.end - source.start
    first, last = excerpt_bounds(source.text, start, end)
    before, after = ellipses(source.text, first, last)
    return f"{before}{source.text[first:start]}»{source.text[start:end]}«{source.text[end:last]}{after}"


def command_setup(args) -> int:
    """Materialize the offline models (checking cached ones by hash) and build
    the index, so the first question is fast."""
    from rag.reader import builtin_exports, builtin_reader_path

    pipeline = make_pipeline(args)
    if pipeline.settings.lean:
        builtin_exports(pipeline.settings, deep=True)
        # OpenVINO checks a cached compiled model's header, not its bytes: setup compiles afresh.
        shutil.rmtree(pipeline.settings.compiled_cache_dir, ignore_errors=True)
    elif pipeline.settings.reader == BUILTIN:
        builtin_reader_path(pipeline.settings.reader_cache_dir, pipeline.settings.embedder_cache_dir, deep=True)
    elif pipeline.settings.embedder == BUILTIN:
        materialize_embedder(pipeline.settings.embedder_cache_dir, deep=True)
    pipeline.warm_up()
    print(f"Models ready in {pipeline.settings.cache_dir}; index ready in {pipeline.settings.index_dir}")
    return 0


def command_index(args) -> int:
    pipeline = make_pipeline(args)
    bar = ProgressBar()
    try:
        index = pipeline.load_index(rebuild=args.rebuild, progress=bar)
    finally:
        bar.close()
    if not index.saved:
        print(f"error: the index could not be saved in {pipeline.collection.folder} (see the warning above)",
              file=sys.stderr)
        return 1
    print(f"{len(index)} passages from {len(index.documents)} document(s) in {pipeline.collection.folder}")
    return 0


def command_add(args) -> int:
    """Add files and folders to a collection, with a progress bar; a failed file changes nothing."""
    pipeline = make_pipeline(args)
    pipeline.load_embedder()
    bar = ProgressBar()
    try:
        report = pipeline.collection.add(args.paths, bar, pipeline.settings.read_limits())
    finally:
        bar.close()
    for label, names in (("added", report.added), ("replaced", report.replaced),
                         ("already in the collection", report.unchanged)):
        for name in names:
            print(f"{label}: {name}")
    if report.resumed:
        print(f"resumed: {report.resumed} passages had been embedded by an interrupted run")
    for name, why in report.failed.items():
        print(f"not added: {why}", file=sys.stderr)
    print(f"collection {pipeline.collection.name!r}: {len(pipeline.collection.entries())} document(s)")
    return 1 if report.failed else 0


def command_list(args) -> int:
    pipeline = make_pipeline(args)
    entries = pipeline.collection.entries()
    if args.json:
        print(json.dumps(entries, ensure_ascii=False, indent=2))
        return 0
    if not entries:
        print(f"collection {pipeline.collection.name!r} has no documents")
    for entry in entries:
        pages = f", {len(entry['pages'])} pages" if entry.get("pages") else ""
        print(f"{entry['id']}\t{entry.get('title', '')}\t{entry['passages']} passages{pages}")
    return 0


def command_remove(args) -> int:
    pipeline = make_pipeline(args)
    for doc_id in pipeline.collection.remove(args.ids):
        print(f"removed: {doc_id}")
    return 0


def command_ask(args) -> int:
    pipeline = args.pipeline = make_pipeline(args)  # held to the end: run() skips freeing its models
    try:
        answer = pipeline.run(args.question, args.history)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return 0
    for warning in answer.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(answer_text(answer))
    return 0


def answer_text(answer) -> str:
    """The answer for a terminal, in the question's language: the span, its
    confidence and its passage with the span between » «; or "does not say"."""
    words = words_for(answer.language)
    if not answer.answered:
        return words["no_answer"]
    colon = " :" if answer.language == "fr" else ":"  # French sets a space before a colon
    source = answer.sources[answer.source_index]
    note = quoted_note(answer.language, source.text)
    where = f"{answer.doc_id}, " + (f"{words['page']} {answer.page}, " if answer.page else "")
    return "\n".join([
        answer.text,
        "",
        f"{words['confidence']}{colon} {percent(answer.score, answer.language)}",
        *([note] if note else []),
        f"{words['source']} ({where}{words['characters']} {answer.start}-{answer.end}){colon}",
        marked_passage(answer),
    ])


def command_eval(args) -> int:
    from rag.evaluation.qa import evaluate, format_report, load_questions

    pipeline = make_pipeline(args)
    report = evaluate(pipeline, load_questions(args.file))
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        if args.verbose:
            for row in report["questions"]:
                print(f"{row['f1']:.2f}  {row['question']}  ->  {row['answer']!r}  (gold {row['gold'][:1]})")
        print(format_report(report))
    return 0


def command_eval_squad(args) -> int:
    if args.documents_mode:
        return command_eval_squad_documents(args)
    from rag.evaluation.documents import load_examples
    from rag.evaluation.reader import predict_all, score, trade_off
    from rag.reader import make_reader

    settings = settings_from(args)
    examples = load_examples(args.file, args.held_out, args.questions_from)
    if args.limit:
        examples = examples[: args.limit]
    reader = make_reader(settings)
    calibration = reader.calibration if settings.reader == BUILTIN else None
    has_unanswerable = any(not e.answerable for e in examples)
    predictions = predict_all(reader, examples)
    bar = READER_MIN_CONFIDENCE if settings.min_confidence is None else settings.min_confidence
    result = score(predictions, calibration if has_unanswerable else None, bar)
    if has_unanswerable and calibration is not None and any(e.answerable for e in examples):
        result["trade_off"] = trade_off(predictions, calibration)
    print_result(result, args.json)
    return 0


def command_eval_squad_documents(args) -> int:
    from rag.evaluation.documents import evaluate_documents, load_examples

    examples = load_examples(args.file, args.held_out, args.questions_from)
    if args.limit:
        examples = examples[: args.limit]
    result = evaluate_documents(make_pipeline(args), examples, args.one_collection)
    print_result(result, args.json)
    return 0


def print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        print("\n".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items()))


def command_bench(args) -> int:
    from rag.evaluation.bench import benchmark

    documents = [str(path) for path in args.documents or []]
    result = benchmark(make_pipeline(args), args.file, args.rounds, documents=documents)
    print(json.dumps(result, indent=2))
    return 0


def command_bench_index(args) -> int:
    import tempfile

    from rag.evaluation.indexing import bench_indexing, write_corpus

    with tempfile.TemporaryDirectory(prefix="rag-corpus-") as scratch:
        corpus = args.corpus or Path(scratch) / "corpus.txt"
        made = write_corpus(args.from_squad, args.mb, corpus) if args.from_squad else {}
        result = {**made, **bench_indexing(corpus, args.file, args.rounds, args.keep_in)}
    print(json.dumps(result, indent=2))
    return 0


def command_bench_store(args) -> int:
    from rag.evaluation.stores import bench_store

    for row in bench_store(settings_from(args), args.from_squad, args.mb, args.sizes, args.file, args.rounds,
                           work=args.work_dir):
        print(json.dumps(row), flush=True)
    return 0


def command_bench_embed(args) -> int:
    from rag.evaluation.embedding_speed import embedding_variants

    pipeline = make_pipeline(args)
    if not pipeline.settings.lean:
        raise ValueError("bench-embed compares ways to run the built-in embedder: use an ONNX engine (the default runtime)")
    pipeline.load_embedder()
    pipeline.load_index()
    texts: list[str] = []
    for entry in pipeline.collection.entries():  # the collection's first passages, in order
        if len(texts) >= args.passages:
            break
        texts += [chunk.text for chunk in pipeline.collection.read_passages(entry)[0]]
    texts = texts[: args.passages]
    rows = embedding_variants(pipeline.embedder.definition, pipeline.embedder, texts)
    print(json.dumps({"passages": len(texts), "variants": rows}, indent=2, ensure_ascii=False))
    return 0


def command_bench_ann(args) -> int:
    import numpy as np

    from rag.evaluation.indexing import bench_ann
    from rag.evaluation.qa import load_questions

    pipeline = make_pipeline(args)
    faiss_index = pipeline.load_index().store.faiss_index  # the file store's
    vectors = np.stack([faiss_index.reconstruct(i) for i in range(faiss_index.ntotal)])
    questions = [item.question for item in load_questions(args.file)]
    queries = pipeline.embedder.embed_queries(questions)
    for row in bench_ann(vectors, queries, args.sizes):
        print(json.dumps(row))
    return 0


def command_soak(args) -> int:
    from rag.evaluation.qa import load_questions
    from rag.evaluation.soak import soak

    result = soak(load_questions(args.file), args.questions, args.every, args.per_session, args.url, args.pid)
    print(json.dumps(result, indent=2))
    return 0


def command_train(args) -> int:
    from rag.training.train import main

    main(args.train_args)
    return 0


def shared_options(as_defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes, before or after the command's name
    (``rag --top-k 3 ask q`` and ``rag ask q --top-k 3``). After it, an option
    left out must not reset one given before it, hence SUPPRESS there."""
    options = argparse.ArgumentParser(add_help=False)
    unset = {} if as_defaults else {"default": argparse.SUPPRESS}
    options.add_argument("--index-dir", type=Path, help="index folder (RAG_INDEX_DIR, default ./index)", **unset)
    options.add_argument("--store", help="where passages are searched: 'files' (the default), 'milvus:PATH.db' "
                         "(Milvus Lite) or 'milvus:http://HOST:19530' (a Milvus server; token in RAG_MILVUS_TOKEN) "
                         "(RAG_STORE)", **unset)
    options.add_argument("--cache-dir", type=Path, help="model cache (RAG_CACHE_DIR, default ~/.cache/rag-qa)", **unset)
    options.add_argument("--embedder", help="'builtin', a sentence-transformers folder or hub id (RAG_EMBEDDER)",
                         **unset)
    options.add_argument("--reader", help="'builtin', an extractive QA folder or hub id (RAG_READER)", **unset)
    options.add_argument("--runtime", choices=list(RUNTIMES),
                         help="how the built-in models run: auto (the ONNX engine measured better on this CPU), "
                         "openvino, onnxruntime or torch (RAG_RUNTIME)", **unset)
    options.add_argument("--precision", choices=list(PRECISIONS),
                         help="how OpenVINO multiplies: auto (bf16 where the CPU has it natively, else f32), "
                         "bf16 or f32 (RAG_PRECISION)", **unset)
    options.add_argument("--top-k", type=int, help="passages the reader reads (RAG_TOP_K)", **unset)
    options.add_argument("--min-confidence", type=float,
                         help="answer only from this confidence up; default: the held-out bar of the confidence "
                         "in use (RAG_MIN_CONFIDENCE)", **unset)
    options.add_argument("--verified-spans", type=int,
                         help="the reader's best spans the verifier reads again; 0: the reader's confidence alone "
                         "(RAG_VERIFIED_SPANS)", **unset)
    options.add_argument("--similarity-weight", type=float,
                         help="weight of question-passage similarity when ranking answers (RAG_SIMILARITY_WEIGHT)",
                         **unset)
    options.add_argument("--collection", help="the collection to use (RAG_COLLECTION, default: 'default', which "
                         "holds the embedded article)", **unset)
    options.add_argument("--document", dest="documents", action="append", type=Path,
                         help="answer from this file alone (repeatable), in a collection of its own", **unset)
    options.add_argument("-v", "--verbose", action="store_true", **unset)
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="Bilingual extractive question answering over documents.",
                                     parents=[shared_options(as_defaults=True)])
    commands = parser.add_subparsers(dest="command", required=True)
    shared = shared_options(as_defaults=False)
    add_command = functools.partial(commands.add_parser, parents=[shared])

    add_command("setup", help="prepare the offline models and the index").set_defaults(run=command_setup)
    index = add_command("index", help="build the index (or reuse it when up to date)")
    index.add_argument("--rebuild", action="store_true")
    index.set_defaults(run=command_index)
    add = add_command("add", help="add files or folders to a collection (.txt .md .html .pdf .docx)")
    add.add_argument("paths", nargs="+", type=Path)
    add.set_defaults(run=command_add)
    listing = add_command("list", help="list a collection's documents")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=command_list)
    remove = add_command("remove", help="remove documents from a collection, by id (see rag list)")
    remove.add_argument("ids", nargs="+")
    remove.set_defaults(run=command_remove)
    ask = add_command("ask", help="answer one question")
    ask.add_argument("question")
    ask.add_argument("--history", action="append", default=[], help="an earlier question (repeatable, oldest first)")
    ask.add_argument("--json", action="store_true")
    ask.set_defaults(run=command_ask, ends_at_once=True)
    evaluate = add_command("eval", help="EM/F1, abstention, recall@k and latency on a JSONL set")
    evaluate.add_argument("file", help="a JSONL file, or extra_qa.jsonl / followups.jsonl shipped with the package")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(run=command_eval)
    squad = add_command("eval-squad", help="evaluate on a SQuAD-format file: the reader alone on each "
                                "paragraph, or with --documents the whole pipeline on each article")
    squad.add_argument("file")
    squad.add_argument("--documents", dest="documents_mode", action="store_true",
                       help="each article is a document: chunked, indexed, retrieved, then read")
    squad.add_argument("--one-collection", action="store_true",
                       help="with --documents: all articles in one collection, each question searched across all")
    squad.add_argument("--held-out", action="store_true",
                       help="only the articles the built-in reader was not trained on")
    squad.add_argument("--questions-from", help="a parallel SQuAD file whose questions replace the file's (same ids)")
    squad.add_argument("--limit", type=int, default=0)
    squad.add_argument("--json", action="store_true")
    squad.set_defaults(run=command_eval_squad)
    bench = add_command("bench", help="both query paths: cold rag ask, warm latency, memory; passage embedding")
    bench.add_argument("--file", default="extra_qa.jsonl", help="questions to time")
    bench.add_argument("--rounds", type=int, default=4, help="passes over the questions, for each path")
    bench.set_defaults(run=command_bench)
    bench_index = add_command("bench-index", help="add a large text to a new collection: passages per second, "
                              "peak memory; then question latency on it")
    bench_index.add_argument("--from-squad", nargs="+", metavar="FILE",
                             help="make the corpus from the paragraphs of these SQuAD-format files")
    bench_index.add_argument("--mb", type=float, default=2.0, help="the corpus's size in MB (with --from-squad)")
    bench_index.add_argument("--corpus", type=Path, help="the text to add (written here with --from-squad)")
    bench_index.add_argument("--keep-in", type=Path, help="build the collection in this index folder and keep it")
    bench_index.add_argument("--file", default="extra_qa.jsonl", help="questions to time on the collection")
    bench_index.add_argument("--rounds", type=int, default=2)
    bench_index.set_defaults(run=command_bench_index)
    bench_store = add_command("bench-store", help="the store named by --store filled with N passages (real ones, "
                              "then copies): add throughput, load, memory, question latency, dense recall@10")
    bench_store.add_argument("--from-squad", nargs="+", metavar="FILE", required=True,
                             help="the real passages: the paragraphs of these SQuAD-format files, embedded once")
    bench_store.add_argument("--mb", type=float, default=4.0, help="the real passages' corpus, in MB")
    bench_store.add_argument("--sizes", type=int, nargs="+", default=[50_000, 500_000])
    bench_store.add_argument("--file", default="extra_qa.jsonl", help="questions to time on each collection")
    bench_store.add_argument("--rounds", type=int, default=2)
    bench_store.add_argument("--work-dir", type=Path, help="where the collections are built (a disk with room)")
    bench_store.set_defaults(run=command_bench_store)
    bench_embed = add_command("bench-embed", help="ways to embed passages faster, against sentence-transformers: "
                              "passages per second and lowest cosine")
    bench_embed.add_argument("--passages", type=int, default=400, help="the collection's first passages to embed")
    bench_embed.set_defaults(run=command_bench_embed)
    bench_ann = add_command("bench-ann", help="flat, HNSW and IVF FAISS indexes at several sizes, grown from the "
                            "collection's vectors: build time, query latency, recall@10")
    bench_ann.add_argument("--sizes", type=int, nargs="+", default=[50_000, 500_000])
    bench_ann.add_argument("--file", default="extra_qa.jsonl", help="questions whose vectors are the queries")
    bench_ann.set_defaults(run=command_bench_ann)
    soak = add_command("soak", help="many questions through the running chat's API, its memory sampled as they go")
    soak.add_argument("--file", default="extra_qa.jsonl", help="questions to ask, in turn")
    soak.add_argument("--questions", type=int, default=1000)
    soak.add_argument("--every", type=int, default=100, help="questions between two memory samples")
    soak.add_argument("--per-session", type=int, default=10, help="questions from each new client (session)")
    soak.add_argument("--url", help="a chat already running (default: start python ui.py on a free port)")
    soak.add_argument("--pid", type=int, help="that chat's process id, to read its memory")
    soak.set_defaults(run=command_soak)
    train = commands.add_parser("train", help="train the reader (see python -m rag.training.train --help)")
    train.add_argument("train_args", nargs=argparse.REMAINDER)
    train.set_defaults(run=command_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    return execute(build_parser().parse_args(argv))


def run() -> None:
    """The ``rag`` command (and ``python -m rag``). A command that has nothing
    left to write when it returns (``ask``: its index, if it had to be made, is
    saved before the answer) ends its process at once, without freeing its
    models and without the interpreter's teardown: freeing the tokenizer and
    the engines object by object takes about 0.35 s, a quarter of a cold
    answer (README, "Speed and memory")."""
    args = build_parser().parse_args()
    status = execute(args)
    if getattr(args, "ends_at_once", False):
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:  # a reader that went away (`rag ask … | head -1`)
                pass
        os._exit(status)
    sys.exit(status)


def execute(args: argparse.Namespace) -> int:
    """Run the command ``args`` names; its exit status."""
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except (ValueError, CollectionBusy, StorageError, StoreUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a disk fault met outside a collection (the model cache, a file given)
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        return 2
    finally:
        # The command is done: spare the interpreter's shutdown a last garbage
        # collection over the ML libraries' millions of objects (over a second).
        gc.freeze()


if __name__ == "__main__":
    run()
