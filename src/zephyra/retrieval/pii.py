"""PII scrubbing: emails, card numbers (Luhn), IP addresses, phone numbers, and, where asked, street addresses and
names after a cue. One scrubber for the whole project: data curation scrubs training text with it
(data/filters.py re-exports it, data/config.py's ``PIIConfig`` is this one) and the server scrubs user data, logs
and feedback with it (serve/privacy.py). It lives here, the lowest layer both may import (the runtime may not
import ``data``: tests/core/test_architecture.py); it needs nothing but ``re``.

    scrub_pii("mail a@b.org or call +44 20 7946 0958", PIIConfig())   # "mail [EMAIL] or call [PHONE]"
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class PIIConfig:
    enabled: bool = True
    emails: bool = True
    phones: bool = True
    ips: bool = True
    cards: bool = True  # only digit runs that pass the Luhn check, so dates and counts survive
    addresses: bool = False  # street addresses ("221B Baker Street"): off for corpora (old texts name streets)
    names: bool = False  # names after a cue ("my name is ...", "Mr. ..."): off for corpora (plays are all names)


_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d.]*\d)")
_H = r"[0-9A-Fa-f]{1,4}"
# Full eight-group form, or a compressed form with at least three groups: "1::2" (a Python slice) survives.
_IPV6 = re.compile(rf"(?<![\w:])(?:(?:{_H}:){{7}}{_H}|(?=(?:[^\s:]*:){{3}}){_H}(?::{_H})*::(?:{_H}(?::{_H})*)?"
                   rf"|::(?:{_H}:){{1,6}}{_H})(?![\w:])")
# Separated groups (+44 20 7946 0958, (555) 123-4567, 555.123.4567); dates like 1994-11-07 do not fit.
# Not part of a longer run of digit groups (a failed card number stays as it is).
_PHONE = re.compile(r"(?<![\w+])(?<!\d[\s.-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?|\d{2,4}[\s.-])\d{3,4}[\s.-]"
                    r"\d{3,4}(?![\w-])(?![\s.-]\d)")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_sub(m: re.Match) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else m.group(0)


_STREET_TYPES = (r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|"
                 r"Close|Crescent|Square|Sq|Parkway|Pkwy|Highway|Hwy|Row|Gardens|Mews|Strasse|Straße")
# A house number, one to four capitalised words, a street type; then an optional unit ("Apt 4B", "Suite 200")
_ADDRESS = re.compile(rf"(?<![\w-])\d{{1,5}}[A-Za-z]?(?:[ ,]+(?:[A-Z][\w'-]*|[NSEW]\.?)){{1,4}} (?:{_STREET_TYPES})\b\.?"
                      r"(?:,? (?:Apt|Apartment|Suite|Unit|Flat|Fl|#)\.? ?[\w-]{1,6})?")
_NAME_WORD = r"[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?"
# A name is detectable where a cue says one follows: an honorific, "my name is", "call me", "signed", "Name:"
_NAME = re.compile(rf"(\b(?:Mr|Mrs|Ms|Mme|Dr|Prof)\.? |\bMiss |\b[Mm]y name is |\b[Mm]y name's |\b[Cc]all me "
                   rf"|\b[Nn]ame: |\b[Ss]igned,? |\b[Rr]egards,? |\b[Ss]incerely,? )"
                   rf"{_NAME_WORD}(?: (?:[A-Z]\. )?{_NAME_WORD}){{0,2}}")


def scrub_pii(text: str, cfg: PIIConfig) -> str:
    """Replace emails, card numbers, IP addresses and phone numbers with [EMAIL], [CARD], [IP], [PHONE]; with
    ``cfg.addresses`` street addresses with [ADDRESS], with ``cfg.names`` names after a cue with [NAME]."""
    if cfg.emails and "@" in text:
        text = _EMAIL.sub("[EMAIL]", text)
    if cfg.cards:
        text = _CARD.sub(_card_sub, text)  # before phones: a card's groups would otherwise look like one
    if cfg.ips:
        text = _IPV4.sub("[IP]", text)
        if "::" in text or text.count(":") >= 7:
            text = _IPV6.sub("[IP]", text)
    if cfg.phones:
        text = _PHONE.sub("[PHONE]", text)
    if cfg.addresses:
        text = _ADDRESS.sub("[ADDRESS]", text)
    if cfg.names:
        text = _NAME.sub(r"\1[NAME]", text)
    return text
