"""Which C constants a real ``.x`` file takes from outside (its ``-D`` constants).

The constants themselves are read from the project's headers by
:func:`xdrstream.codec.cheaders.c_constants` (and the file's ``%#define`` lines by
:func:`~xdrstream.codec.cheaders.passed_through_constants`); this keeps those the file uses.
"""

from __future__ import annotations

import re

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


def referenced(constants: dict[str, int], x_text: str) -> dict[str, int]:
    """Those of ``constants`` that the ``.x`` text names and does not define itself."""
    # %-lines go to the C output only: neither a use nor a definition in the XDR language.
    x_text = "\n".join(line for line in x_text.splitlines() if not line.startswith("%"))
    x_text = _COMMENT.sub(" ", x_text)
    words = set(re.findall(r"[A-Za-z_]\w*", x_text))
    own = set(re.findall(r"\b([A-Za-z_]\w*)\s*=", x_text))
    own |= set(re.findall(r"\b(?:program|version)\s+([A-Za-z_]\w*)", x_text))
    own |= set(re.findall(r"\b([A-Za-z_]\w*)\s*\([^()]*\)\s*=", x_text))  # procedures
    own |= set(re.findall(r"^\s*#\s*define\s+([A-Za-z_]\w*)", x_text, re.M))
    return {name: v for name, v in constants.items() if name in words and name not in own}
