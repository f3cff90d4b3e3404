"""A strict reader of the Prometheus text exposition format 0.0.4, for tests.

Stricter than Prometheus itself where the gateway has no reason to be loose: every
family has one HELP and one TYPE line before its samples, a family's samples are
together, no label set repeats, a label value uses only the three escapes the format
defines (``\\\\``, ``\\"``, ``\\n``), and the text ends with a line feed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class FormatError(ValueError):
    pass


@dataclass
class Family:
    name: str
    help: str | None = None
    type: str | None = None
    samples: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    def value(self, **labels: str) -> float:
        return self.samples[tuple(sorted(labels.items()))]

    def by(self, label: str) -> dict[str, float]:
        return {dict(k)[label]: v for k, v in self.samples.items()}


def _value(text: str, line: str) -> float:
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", text):
        raise FormatError(f"not a number: {text!r} in {line!r}")
    return float(text)


def _labels(text: str, line: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """The label set after ``{`` and the rest of the line after ``}``."""
    out: dict[str, str] = {}
    i = 0
    while True:
        if text[i : i + 1] == "}":
            return tuple(sorted(out.items())), text[i + 1 :]
        m = LABEL.match(text, i)
        if m is None or text[m.end() : m.end() + 2] != '="':
            raise FormatError(f"bad label in {line!r}")
        name = m.group()
        i = m.end() + 2
        value: list[str] = []
        while True:
            if i >= len(text):
                raise FormatError(f"unterminated label value in {line!r}")
            c = text[i]
            if c == "\\":
                nxt = text[i + 1 : i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise FormatError(f"undefined escape \\{nxt} in {line!r}")
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        if name in out:
            raise FormatError(f"label {name} twice in {line!r}")
        out[name] = "".join(value)
        if text[i : i + 1] == ",":
            i += 1
        elif text[i : i + 1] != "}":
            raise FormatError(f"expected , or }} in {line!r}")


def _unescape_help(text: str) -> str:
    return re.sub(r"\\(\\|n)", lambda m: "\n" if m.group(1) == "n" else "\\", text)


def parse(text: str) -> dict[str, Family]:
    if not text.endswith("\n"):
        raise FormatError("the text must end with a line feed")
    families: dict[str, Family] = {}
    current: str | None = None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, rest = line[2:6], line[7:]
            name, _, arg = rest.partition(" ")
            if not NAME.fullmatch(name):
                raise FormatError(f"bad metric name in {line!r}")
            fam = families.setdefault(name, Family(name))
            if fam.samples:
                raise FormatError(f"{kind} after samples of {name}")
            if kind == "HELP":
                if fam.help is not None:
                    raise FormatError(f"second HELP for {name}")
                fam.help = _unescape_help(arg)
            else:
                if fam.type is not None or arg not in TYPES:
                    raise FormatError(f"bad or second TYPE for {name}: {line!r}")
                fam.type = arg
            current = name
            continue
        if line.startswith("#") or not line:
            raise FormatError(f"stray line {line!r}")
        m = NAME.match(line)
        if m is None:
            raise FormatError(f"bad sample line {line!r}")
        name, rest = m.group(), line[m.end() :]
        labels: tuple[tuple[str, str], ...] = ()
        if rest.startswith("{"):
            labels, rest = _labels(rest[1:], line)
        if not rest.startswith(" "):
            raise FormatError(f"expected a space before the value in {line!r}")
        parts = rest[1:].split(" ")
        if len(parts) not in (1, 2):
            raise FormatError(f"bad value in {line!r}")
        if name != current or families[name].type is None or families[name].help is None:
            raise FormatError(f"sample of {name} outside its family (HELP and TYPE first, samples together)")
        fam = families[name]
        if labels in fam.samples:
            raise FormatError(f"repeated label set in {line!r}")
        fam.samples[labels] = _value(parts[0], line)
    return families
