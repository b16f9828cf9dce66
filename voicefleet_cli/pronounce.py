"""``voicefleet pronounce``: the readings the Mandarin engines will use, computed here with the same
frontend (voicefleet/text/mandarin.py ``readings``), so it needs no control plane and a whole corpus
goes through one process (one line of standard input in, one line out)."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from voicefleet_cli.settings import CliSettings


def cmd_pronounce(args, settings: CliSettings) -> int:
    from voicefleet.text.mandarin import readings  # the frontend loads only for this command

    show = _as_json if args.json else _as_text
    if args.text is not None:
        print(show(readings(args.text)))
        return 0
    _each_line(sys.stdin, sys.stdout, lambda line: show(readings(line)))
    return 0


def _each_line(lines: TextIO, out: TextIO, show) -> None:
    """One output line per input line, written as it is read (a pipe sees each answer at once)."""
    for line in lines:
        out.write(show(line.rstrip("\r\n")) + "\n")
        out.flush()


def _as_json(entries: list[tuple[str, str | None]]) -> str:
    return json.dumps([{"char": c, "pinyin": p} for c, p in entries], ensure_ascii=False)


def _as_text(entries: list[tuple[str, str | None]]) -> str:
    """``长(chang2) 江(jiang1) ，``: each read character with its reading; what is not read, as written."""
    words, plain = [], ""
    for char, pinyin in entries:
        if pinyin is None:
            plain += char
            continue
        if plain.strip():
            words.append(plain.strip())
        plain = ""
        words.append(f"{char}({pinyin})")
    if plain.strip():
        words.append(plain.strip())
    return " ".join(words)
