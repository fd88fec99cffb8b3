"""Token ids -> text as it streams: what may be sent now, what must wait, and where a stop string ends it.

Two things make streamed text differ from decoding the whole answer at the end, and both are handled here:
- a byte-level BPE token can end inside a UTF-8 character (``\\ufffd`` when decoded alone): that text waits
  for the token that completes it;
- a stop string may arrive split over tokens: text that could still become a stop string waits until it is
  clear either way, and the answer ends before the stop string, which is never sent.
So the concatenation of every piece sent equals the final text, exactly.
"""

from __future__ import annotations


class TextStream:
    def __init__(self, tokenizer, stop: list[str] | None = None):
        self.tokenizer, self.stop = tokenizer, list(stop or [])
        self.ids: list[int] = []
        self.decoded = ""  # the text of every id so far (the part known to be whole)
        self.sent = ""  # what push() has returned so far
        self.stopped = False

    def push(self, token: int) -> str:
        """Add one generated token; returns the text that may be sent now ("" if none). After a stop string,
        ``stopped`` is True and nothing more is returned."""
        if self.stopped:
            return ""
        self.ids.append(int(token))
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete character: wait for the token that completes it
            return ""
        self.decoded = text.lstrip()  # an answer starts at its first visible character
        return self._release(final=False)

    def finish(self) -> str:
        """The text still held back at the end of the answer: the start of a stop string that never came, or a
        character the last token left incomplete (sent as the tokenizer decodes it, so the whole answer is
        exactly ``tokenizer.decode(ids)``)."""
        if self.stopped:
            return ""
        if self.ids:
            self.decoded = self.tokenizer.decode(self.ids, skip_special_tokens=True).lstrip()
        return self._release(final=True)

    @property
    def text(self) -> str:
        return self.sent

    def _release(self, final: bool) -> str:
        # Held-back text is never sent, so a stop string can only start in the unsent part (see _held).
        pending = self.decoded[len(self.sent):]
        ends = [at for at in (pending.find(s) for s in self.stop) if at >= 0]
        if ends:
            pending, self.stopped = pending[:min(ends)], True
        elif not final:
            pending = pending[:len(pending) - _held(pending, self.stop)]
        self.sent += pending
        return pending


def _held(text: str, stops: list[str]) -> int:
    """How many characters at the end of ``text`` could be the start of a stop string: the longest such suffix.
    Whatever comes before it cannot begin a stop string that the next tokens would complete."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
