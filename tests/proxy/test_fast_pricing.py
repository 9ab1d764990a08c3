"""Pricing's per-token fast path gives exactly what the library's full calculation gives."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from agent import Call
from agent._pricing import _price_with_library, price_from_library

MODELS = [("anthropic", "claude-sonnet-4-5"), ("anthropic", "claude-opus-4-1"),
          ("anthropic", "claude-haiku-4-5"), ("openai", "gpt-4o"), ("openai", "gpt-4o-mini"),
          ("openai", "o4-mini"), ("openai", "gpt-5"), ("google", "gemini-2.5-pro")]
tokens = st.integers(0, 400_000) | st.sampled_from([0, 1, 199_999, 200_000, 200_001])


@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from(MODELS), fresh=tokens, read=tokens, write=tokens,
       write_1h_share=st.floats(0, 1), output=st.integers(0, 100_000),
       day=st.integers(0, 600))
def test_fast_path_equals_the_library(model: tuple[str, str], fresh: int, read: int,
                                      write: int, write_1h_share: float, output: int,
                                      day: int) -> None:
    call = Call(tool="t", provider=model[0], model=model[1], input_tokens=fresh,
                cache_read_tokens=read, cache_write_tokens=write,
                cache_write_1h_tokens=int(write * write_1h_share), output_tokens=output,
                ts=datetime.fromtimestamp(1_735_689_600 + day * 86_400 + 3_000, UTC))
    assert price_from_library(call) == _price_with_library(call, model[0])


def test_long_context_tier_applies_above_its_threshold() -> None:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    short = Call(tool="t", provider="anthropic", model="claude-sonnet-4-5", ts=at,
                 input_tokens=200_000, output_tokens=1000)
    long = Call(tool="t", provider="anthropic", model="claude-sonnet-4-5", ts=at,
                input_tokens=200_001, output_tokens=1000)
    assert price_from_library(short) == 600_000 + 15_000
    assert price_from_library(long) == round(200_001 * 6 + 1000 * 22.5)


def test_list_prices_are_summed_as_integers() -> None:
    """The models above have short decimal prices: the property test runs the integer sum."""
    from agent._pricing import _band_rates, _thresholds

    hour = 1_735_689_600 // 3600
    for provider, model in MODELS:
        if _thresholds(provider, model, hour) is None:
            continue
        rates = _band_rates(provider, model, hour, 0)
        assert rates is not None, model
        assert rates[1] is not None, model
