"""JSON from untrusted text with bounds: nesting depth, number size, no NaN or Infinity.

Python's own parser accepts ``NaN``, 4,300-digit integers and nesting up to the
recursion limit; each of those later breaks something (Kafka consumers in other
languages, ``int()`` limits, ``json.dumps`` output that is not JSON).
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from services.errors import JsonOutOfBounds, MalformedJson

MAX_DEPTH = 64
#: Longest integer accepted, in digits (a signed 64-bit integer has 19).
MAX_INTEGER_DIGITS = 40
#: Longest number literal with a fraction or exponent, in characters.
MAX_FLOAT_CHARS = 64


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise JsonOutOfBounds(f"an integer has more than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if len(text) > MAX_FLOAT_CHARS or not math.isfinite(value):
        shown = text if len(text) <= 24 else f"{text[:24]}..."
        raise JsonOutOfBounds(f"the number {shown} is out of range")
    return value


def _constant(name: str) -> NoReturn:
    raise MalformedJson(f"{name} is not a JSON value")


def depth_of(value: Any) -> int:
    """Nesting depth of arrays and objects (a scalar is 0), without recursion.

    Raises JsonRefused for a string (key or value) that is not valid Unicode: a lone
    surrogate from a ``\\ud800`` escape parses, then fails every later UTF-8 encode
    (Kafka messages, S3 objects, log lines)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            _check_text(*item.keys())
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth + 1)
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)
    return deepest


def _check_text(*texts: str) -> None:
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedJson("a string is not valid Unicode (a lone surrogate escape)") from None


def loads(text: str) -> Any:
    """Parse ``text``; raises JsonRefused naming what is wrong."""
    try:
        value = json.loads(text, parse_int=_integer, parse_float=_float,
                           parse_constant=_constant)
    except RecursionError:  # the C parser's own bound, far above ours
        raise JsonOutOfBounds(f"JSON is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as error:
        raise MalformedJson(f"body is not valid JSON: {error.msg} at line {error.lineno} "
                          f"column {error.colno}") from None
    if depth_of(value) > MAX_DEPTH:
        raise JsonOutOfBounds(f"JSON is nested deeper than {MAX_DEPTH} levels")
    return value
