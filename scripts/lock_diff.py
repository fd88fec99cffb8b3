"""Compare installed versions (``pip freeze`` on stdin) with requirements.lock; used by scripts/check-latest.sh.

    pip freeze | python scripts/lock_diff.py requirements.lock            # one "name: lock -> installed" a line
    python scripts/lock_diff.py --write-docs docs/install.md DATE SUMMARY STATUS < diff-lines
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BEGIN, END = "<!-- check-latest:begin -->", "<!-- check-latest:end -->"


def pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if m:
            out[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2].split("+")[0]  # torch 2.13.0+cpu is 2.13.0
    return out


def diff(lock: dict[str, str], installed: dict[str, str]) -> list[str]:
    rows = [f"{n}: {v} (lock) -> {installed[n]}" for n, v in sorted(lock.items()) if n in installed
            and installed[n] != v]
    rows += [f"{n}: not in the lock -> {v}" for n, v in sorted(installed.items()) if n not in lock and n != "zephyra"]
    return rows


def write_docs(path: Path, date: str, summary: str, status: str, drift: list[str]) -> None:
    verdict = "pass" if status == "0" else "FAIL"
    body = [BEGIN, f"Last run: **{date}**, `bash scripts/check-latest.sh`: {verdict} ({summary or 'no summary'}).", ""]
    body += ["Newer than the lock:", ""] + [f"- {d}" for d in drift] if drift else ["Nothing newer than the lock."]
    text = path.read_text() if path.is_file() else ""
    block = "\n".join(body + [END])
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--write-docs"]:
        path, date, summary, status = argv[1:5]
        write_docs(Path(path), date, summary, status, [line for line in sys.stdin.read().splitlines() if line])
        return
    lock = pins(Path(argv[0]).read_text().splitlines())
    print("\n".join(diff(lock, pins(sys.stdin.read().splitlines()))))


if __name__ == "__main__":
    main(sys.argv[1:])
