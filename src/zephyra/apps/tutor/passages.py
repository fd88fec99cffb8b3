"""Passage tasks: the science and reading subjects' tutoring tasks, a question answered by a retrieved passage.

A task is a Q/A record of the subject's corpus (corpora.py: "What is a neutron in physics?", "Which word completes
...?", "In Macbeth, who says ...?", "What does Psalms 92:13 say?") and the passage retrieved for its question. Its
**keys** are the words that answer it, found by the question's form, the same way for a record's answer and for a
retrieved passage: the word in a cloze's gap, a quoted line's speaker, else the two most informative words of the
answer that the question does not say. The tutor's hints are the passage with the keys masked, cited by its title,
then their first letters; the learner reaches the answer when they say every key.

Two sets of keys: ``keys``, what the tutor can know (from the question and the retrieved passage: its hints, check
and answer guard use them), and ``gold``, from the record's answer (what the benchmark measures leaks and success
by). At run time (``zephyra tutor ask``) there is no record: both are the passage's.

    task = passage_task(record["question"], hit.text, answer=record["answer"], doc_id=record["doc_id"])
    task.hint(0)   # 'The passage "neutron (physics)" says: "An elementary _____ with no electric _____ ..."'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BLANK = "_____"
WINDOW = 18  # words of the passage a hint quotes
_WORD = re.compile(r"[A-Za-zÀ-ÿæœ]+(?:['’-][A-Za-zÀ-ÿæœ]+)*")
_REF = re.compile(r"^\s*(?:[1-3] )?[A-Z][a-z]+ \d+:\d+:?\s+")  # "Psalms 48:12 " before a verse
_SPEAKER = re.compile(r"^\s*\"?([A-Z][A-Za-z'. -]{1,40}?)(?: says it\b| \()")
_HEAD = re.compile(r"^([^:]{1,80}?\):|[1-3]? ?[A-Z][a-z]+ \d+:\d+:?)\s+")  # "neutron (physics): ", "HAMLET (...): "
STOP = frozenset("""
a about above after again against all also among an and any are as at be because been before being below between
both but by can could did do does doing down during each either especially etc even ever every few for from further
generally had has have having he her here hers him his how however in into is it its itself just kind kinds like made
make many may more most much must neither nor not now of off often on once one only or other others our out over own
part particular pertaining relating same several shall she should since so some specifically such than that the thee
their them then there thereof these they thine this those thou thus thy to too under unto until upon used usually
various very was we were what when where which while who whom whose why will with within without would ye yet you
your said saith says called certain form forms sort thing things
""".split())
DEMAND_WORDS = ("tell me", "give me", "give up", "the answer", "just say")
FOLLOW = ("What is the missing word?", "Which word fits the gap?", "What do you think the missing word is?")
FOLLOW_MANY = ("What are the missing words?", "Which words fit the gaps?", "What do you think the missing words are?")


def stem(word: str) -> str:
    """A word's matching form: lower case, a plural's "s" dropped ("particles" ~ "particle")."""
    w = word.casefold().replace("’", "'")
    return w[:-1] if len(w) > 4 and w.endswith("s") and not w.endswith(("ss", "us", "is")) else w


def stems(text: str) -> set[str]:
    return {stem(w) for w in _WORD.findall(text)}


def body_of(text: str) -> str:
    """A passage or answer without its title ("neutron (physics): ", "HAMLET (Hamlet, Act 1, Scene 2): ",
    "Psalms 48:12 ")."""
    return _HEAD.sub("", _REF.sub("", text, count=1), count=1).strip()


def title_of(text: str) -> str:
    m = _HEAD.match(text) or _REF.match(text)
    return m.group(0).strip().rstrip(":") if m else " ".join(text.split()[:4])


def _gap_word(question: str, text: str) -> str | None:
    """The word of ``text`` that fills the question's gap ("... also wisdom, and instruction, and _____."): the
    words either side of the blank located in ``text``."""
    m = re.search(r"\"([^\"]*" + re.escape(BLANK) + r"[^\"]*)\"", question)
    line = m.group(1) if m else question
    before, _, after = line.partition(BLANK)
    left, right = _WORD.findall(before)[-3:], _WORD.findall(after)[:2]
    gap = r"\W+".join([*map(re.escape, left), r"(" + _WORD.pattern + r")", *map(re.escape, right)])
    found = re.search(gap, text, re.I)
    return found.group(1) if found else None


def answer_keys(question: str, text: str, n: int = 2) -> tuple[str, ...]:
    """The words of ``text`` (a record's answer or a retrieved passage) that answer ``question``: the gap's word
    for a cloze, the speaker for "who says", else the ``n`` longest informative words the question does not say."""
    if BLANK in question:
        word = _gap_word(question, text)
        if word:
            return (word.casefold(),)
    if re.search(r"\bwho says\b", question, re.I):
        m = _SPEAKER.match(text)
        if m:
            return tuple(w.casefold() for w in _WORD.findall(m.group(1)))[-1:]  # "First Witch" -> "witch"
    asked, body = stems(question), body_of(text)
    parts = _SENTENCE_END.split(body) or [body]  # the sentence that answers: the one sharing most words with the
    body = max(parts, key=lambda p: len(stems(p) & asked - STOP))  # question (the first, on a tie)
    if kind_of(question) == "definition":  # the definition proper: its first clause, as a record's answer
        body = body.split(";")[0]
    words: dict[str, str] = {}  # stem -> the word as written (lower case)
    for w in _WORD.findall(body):
        s = stem(w)
        if len(w) >= 4 and s not in STOP and w.casefold() not in STOP and s not in asked and s not in words:
            words[s] = w.casefold()
    order = list(words)
    return tuple(words[s] for s in sorted(order, key=lambda s: (-len(s), order.index(s)))[:n])


def mask(text: str, keys) -> str:
    """``text`` with every word matching a key replaced by the blank."""
    ks = {stem(k) for k in keys}
    return _WORD.sub(lambda m: BLANK if stem(m.group(0)) in ks else m.group(0), text)


def _ngrams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    w = [x.casefold() for x in _WORD.findall(text)]
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


@dataclass(frozen=True)
class PassageTask:
    id: str
    kind: str  # "definition", "cloze", "speaker", "verse"
    question: str
    passage: str  # the retrieved passage (with its title)
    answer: str  # the record's answer, or the passage's body at run time
    keys: tuple[str, ...]  # what the tutor can know: from the question and the passage
    gold: tuple[str, ...]  # what the benchmark checks: from the record's answer
    doc_id: str = ""
    hints: list[str] = field(default_factory=list)
    label = "Question"
    history = 1  # the prompt holds the learner's last message only: a passage's hint is long, the base's context
    # 256 tokens, and the check and the hint in the sources say what the turn needs

    # --- what the Socratic loop asks of a task (socratic.py) -----------------------------------------------------

    @property
    def follow(self) -> tuple[str, ...]:
        return FOLLOW if len(self.keys) <= 1 else FOLLOW_MANY

    def hint(self, i: int) -> str:
        return self.hints[min(i, len(self.hints) - 1)]

    def confirmation(self) -> str:
        """Short and without the words (the learner has just said them): the adapter writes a confirmation whole,
        and measured, it neither quoted a passage whole (cut off at 48 tokens) nor copied the learner's word."""
        return "That is what the passage says."

    def check(self, i: int, learner: str) -> tuple[str, int]:
        """right (some keys, not all) | wrong | demand | solved (every key) | none; each but none and solved moves
        the learner to the next, stronger hint."""
        said, low, nxt = stems(learner), learner.casefold(), min(i + 1, len(self.hints) - 1)
        got = {stem(k) for k in self.keys} & said
        if self.keys and len(got) == len(self.keys):
            return "solved", len(self.hints)
        if any(w in low for w in DEMAND_WORDS) and not got:
            return "demand", nxt
        if not (said - STOP):
            return "none", i
        return ("right" if got else "wrong"), nxt

    def reached(self, learner: str) -> bool:
        """Whether the learner has said the (gold) answer."""
        return bool(self.gold) and {stem(k) for k in self.gold} <= stems(learner)

    def says_answer(self, turn: str) -> bool:
        """A leak (measured by the gold keys): the turn says every word of the answer."""
        return self.reached(turn)

    def leaks(self, turn: str) -> bool:
        """The run-time guard's test (by the tutor's own keys, stricter than the measure): any key word in the
        turn, whatever its wording."""
        return bool({stem(k) for k in self.keys} & stems(turn))

    def grounded(self, i: int, turn: str) -> bool:
        """The turn quotes the retrieved passage: four words in a row of it."""
        return bool(_ngrams(turn) & _ngrams(self.passage))

    def attempt(self, i: int, tutor: str, learner) -> str:
        """A simulated learner's try: the keys (right, likelier after a grounded hint) or another word of the
        passage."""
        r = learner.r
        hinted = self.grounded(i, tutor)
        if r.random() < (learner.p_hinted if hinted else learner.p_right) and self.gold:
            said = " and ".join(self.gold)
        else:
            pool = [w for w in _WORD.findall(body_of(self.passage)) if len(w) >= 4 and stem(w) not in STOP
                    and stem(w) not in {stem(k) for k in self.gold}]
            said = r.choice(pool).casefold() if pool else "something else"
        return r.choice(["Is it {}?", "I think it's {}.", "{}", "It's {}.", "Maybe {}?"]).format(said)


def _quote(body: str, keys, start: int = 0) -> str:
    words = body.split()
    cut = words[start:start + WINDOW]
    text = " ".join(cut)
    return ("... " if start else "") + text + (" ..." if start + WINDOW < len(words) else "")


def _window_start(body: str, keys) -> int:
    ks = {stem(k) for k in keys}
    for j, w in enumerate(body.split()):
        if stems(w) & ks:
            return max(0, j - WINDOW // 2)
    return 0


def _letters(keys, level: int) -> str:
    if not keys:
        return ""
    if level == 1:
        parts = [f"\"{k[0]}\"" for k in keys]
    else:
        parts = [f"\"{k[:max(1, min(len(k) // 2, len(k) - 2))]}\"" for k in keys]
    if len(keys) == 1:
        return f" The missing word starts with {parts[0]}."
    return f" The missing words start with {' and '.join(parts)}."


def hints_of(passage: str, keys) -> list[str]:
    """The passage's hints, weakest first: the passage around the first key, keys masked, cited by its title;
    then with the keys' first letter; then with their first half."""
    body = body_of(passage)
    quote = mask(_quote(body, keys, _window_start(body, keys)), keys)
    head = f"The passage \"{mask(title_of(passage), keys)}\" says: \"{quote}\""
    return [head, head + _letters(keys, 1), head + _letters(keys, 2)]


_SENTENCE_END = re.compile(r"(?<=[a-z]{2}[.!?])\s+(?=[A-Z])")


def kind_of(question: str) -> str:
    if BLANK in question:
        return "cloze"
    if re.search(r"\bwho says\b", question, re.I):
        return "speaker"
    return "definition" if question.startswith("What is ") else "verse"


def passage_task(question: str, passage: str, *, answer: str | None = None, doc_id: str = "", id: str = ""
                 ) -> PassageTask:
    """The task of ``question`` over the retrieved ``passage``; ``answer``: the record's (for the gold keys)."""
    keys = answer_keys(question, passage)
    gold = answer_keys(question, answer) if answer is not None else keys
    return PassageTask(id=id or doc_id or question[:40], kind=kind_of(question), question=question, passage=passage,
                       answer=answer if answer is not None else body_of(passage), keys=keys, gold=gold,
                       doc_id=doc_id, hints=hints_of(passage, keys))


# --- the subject's tasks, by split ------------------------------------------------------------------------------

_CORPUS: dict[str, tuple] = {}


def subject_records(subject: str) -> tuple[list[dict], dict[str, list[dict]]]:
    """(the subject's chunks, its Q/A records by split): split by document (subjects.split_by_document), and no
    validation or test question that a training record asks too (the same term in GCIDE and WordNet)."""
    from .corpora import subject_corpus
    from .subjects import split_by_document

    if subject not in _CORPUS:
        chunks, records, _ = subject_corpus(subject)
        splits = split_by_document(records)
        seen = {r["question"].casefold() for r in splits["train"]}
        for name in ("validation", "test"):
            kept = []
            for r in splits[name]:
                if r["question"].casefold() not in seen:
                    seen.add(r["question"].casefold())
                    kept.append(r)
            splits[name] = kept
        _CORPUS[subject] = chunks, splits
    return _CORPUS[subject]


def top_passages(root, subject: str, chunks: list[dict], questions: list[str]) -> tuple[list[str], str]:
    """(the top passage for each question, how it was found): the subject's index under ``root`` (``zephyra
    tutor data``; hybrid search) when it is there, else a BM25 index of ``chunks`` built in a temporary
    directory."""
    import tempfile
    from pathlib import Path

    from ...retrieval.index import build_index, load_index

    path = Path(root) / "index" / subject if root is not None else None
    if path is not None and (path / "manifest.json").is_file():
        index = load_index(path)
        mode = "hybrid" if index.has_dense else "sparse"  # a BM25-only index (tutor data --no-dense)
        hits = index.search(questions, k=1, mode=mode)
        return [h[0].text if h else "" for h in hits], f"{mode}, the tutor's index"
    with tempfile.TemporaryDirectory(prefix="zephyra-passages-") as tmp:
        index = build_index([{**c, "domain": subject} for c in chunks], Path(tmp) / subject, domain=subject,
                            encoder=None, dense=False, log=lambda s: None)
        hits = index.search(questions, k=1, mode="sparse", cosine=False)
    return [h[0].text if h else "" for h in hits], "BM25"


def tasks_of_split(subject: str, split: str, *, retrieve: bool = False, root=None, limit: int | None = None
                   ) -> tuple[list[PassageTask], str]:
    """(the split's tasks, where their passages came from): each record's question over its passage -- the
    record's own chunk (the training dialogues), or with ``retrieve`` the top hit for its question
    (``top_passages``: held-out, the passage the tutor would find). Records whose answer has no key word (every
    word already in the question) are left out."""
    from ...data.knowledge import gold_chunks

    chunks, splits = subject_records(subject)
    records = [r for r in splits[split] if answer_keys(r["question"], r["answer"])][:limit]
    how = "the record's chunk"
    if not retrieve:
        by_doc: dict[str, list[dict]] = {}
        for c in chunks:
            by_doc.setdefault(c["doc_id"], []).append(c)
        text = {c["id"]: c["text"] for c in chunks}
        passages = [text[gold_chunks(r, by_doc)[0]] if by_doc.get(r["doc_id"]) else r["answer"] for r in records]
    else:
        passages, how = top_passages(root, subject, chunks, [r["question"] for r in records])
    return [passage_task(r["question"], p, answer=r["answer"], doc_id=r["doc_id"], id=f"{subject}-{split}-{n}")
            for n, (r, p) in enumerate(zip(records, passages))], how
