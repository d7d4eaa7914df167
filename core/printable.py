"""Which characters may reach a terminal or a log line as they are, and how the others are shown.

How this works: a character is *unsafe* when a terminal or a text viewer acts on it instead of
showing it: Unicode control characters (category Cc: C0 with ESC, DEL, C1 with U+009B CSI),
format characters (Cf: bidi overrides, zero-width characters, the BOM), line and paragraph
separators (Zl, Zp) and lone surrogates (Cs, which no encoder accepts). ``escape`` replaces each
with a visible escape in Python's spelling (``\\x1b``, ``\\x9b``, ``\\u202e``), so the text still
says what was there but nothing is interpreted. ``str.isprintable`` (C speed) settles the common
case; only text that fails it is looked at character by character.

Private-use (Co) and unassigned (Cn) code points are shown as they are: rare characters in
Chinese names are still encoded in private-use areas (GB 18030), and newer CJK extensions are
unassigned in older Unicode tables; a terminal prints them as glyphs or boxes, and acts on none.

The person schema refuses the Cc and Cf characters at write time (``core.person``); ``escape`` is
for everything that is shown anyway: values stored before that rule, values from peers, errors.
"""

from __future__ import annotations

import unicodedata

UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def is_unsafe(ch: str) -> bool:
    """Whether a terminal or viewer may act on the character ``ch`` instead of showing it."""
    return unicodedata.category(ch) in UNSAFE_CATEGORIES


def first_unsafe(text: str) -> int | None:
    """The index of the first unsafe character in ``text``, or None."""
    if text.isprintable():  # no Cc, Cf, Cs, Zl, Zp (nor Zs other than the space, which are safe)
        return None
    for i, ch in enumerate(text):
        if ch != " " and is_unsafe(ch):
            return i
    return None


def spelled(ch: str) -> str:
    """One character as Python's escape: ``\\x1b``, ``\\u202e``, ``\\U000e0001``."""
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str) -> str:
    """``text`` with every unsafe character replaced by its visible escape (see the module header)."""
    if text.isprintable():
        return text
    return "".join(spelled(ch) if is_unsafe(ch) else ch for ch in text)


def escape_json(text: str) -> str:
    """JSON text (from ``json.dumps``) with unsafe characters as ``\\uXXXX`` escapes.

    The result decodes to exactly the same value: outside strings JSON text holds only ASCII
    punctuation, digits, letters and whitespace, so every unsafe character is inside a string,
    where ``\\uXXXX`` spells it. (``json.dumps`` escapes C0 itself but, with
    ``ensure_ascii=False``, leaves DEL, C1, Cf, line separators and lone surrogates raw.)
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in "\n\r\t " or not is_unsafe(ch):  # JSON's own whitespace (indentation) stays
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:  # a supplementary Cf (tags, U+E0001...): JSON spells it as a surrogate pair
            high, low = divmod(ord(ch) - 0x10000, 0x400)
            out.append(f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}")
    return "".join(out)
