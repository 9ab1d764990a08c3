"""Token estimates for when a provider reports no usage (then the call is flagged estimated).

About four characters a token is the rule of thumb the major tokenizers share for English
and code; it is a fallback, never a substitute for the provider's own figure.
"""

from __future__ import annotations

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str | bytes) -> int:
    """A rough token count for ``text`` (at least 1 for non-empty text)."""
    if not text:
        return 0
    return max(1, -(-len(text) // CHARS_PER_TOKEN))
