"""Pricing: cache tokens priced as cache, unknown models never a silent $0, overrides."""

from __future__ import annotations

from datetime import UTC, datetime

from agent import Call, price_call
from agent._config import ModelPrice

TS = datetime(2026, 6, 1, tzinfo=UTC)


def anthropic(**tokens: int) -> Call:
    return Call(tool="t", provider="anthropic", model="claude-sonnet-4-5", ts=TS, **tokens)


def test_anthropic_with_every_kind_of_cache_token() -> None:
    # Sonnet 4.5: $3 input, $15 output, $0.30 cache read, $3.75 5-minute write, $6 1-hour
    # write per million tokens; dollars per million tokens times tokens = micro-dollars.
    call = anthropic(input_tokens=1000, output_tokens=500, cache_read_tokens=20_000,
                     cache_write_tokens=2000, cache_write_1h_tokens=500)
    assert price_call(call) == 1000 * 3 + 500 * 15 + 20_000 * 0.3 + 1500 * 3.75 + 500 * 6


def test_cache_reads_are_not_priced_as_input() -> None:
    cached = price_call(anthropic(cache_read_tokens=100_000))
    fresh = price_call(anthropic(input_tokens=100_000))
    assert cached is not None
    assert fresh is not None
    assert cached * 10 == fresh


def test_openai_cached_input() -> None:
    call = Call(tool="t", provider="openai", model="gpt-4o", ts=TS, input_tokens=1000,
                cache_read_tokens=1000, output_tokens=100)
    assert price_call(call) == 1000 * 2.5 + 1000 * 1.25 + 100 * 10


def test_unknown_model_is_unknown_not_free() -> None:
    call = Call(tool="t", provider="openai", model="gpt-from-the-future", ts=TS,
                input_tokens=1000, output_tokens=10)
    assert price_call(call) is None
    nobody = Call(tool="t", provider="acme", model="acme-1", ts=TS, input_tokens=5)
    assert price_call(nobody) is None


def test_local_models_cost_nothing() -> None:
    call = Call(tool="t", provider="ollama", model="qwen2.5-coder:7b", ts=TS, input_tokens=10)
    assert price_call(call) == 0


def test_override_prices_a_model_the_library_lacks_and_defaults_cache_ratios() -> None:
    call = Call(tool="t", provider="acme", model="acme-1", ts=TS, input_tokens=1000,
                output_tokens=1000, cache_read_tokens=1000, cache_write_tokens=1000,
                cache_write_1h_tokens=400)
    price = ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0)
    # 1000*2 + 1000*8 + 1000*0.2 (read: a tenth) + 600*2.5 (5m: 1.25x) + 400*4 (1h: 2x)
    assert price_call(call, {"acme-1": price}) == 2000 + 8000 + 200 + 1500 + 1600
    explicit = ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0, cache_read_per_mtok=1.0)
    assert price_call(call, {"acme/acme-1": explicit}) == 2000 + 8000 + 1000 + 1500 + 1600


def test_override_beats_the_library() -> None:
    call = anthropic(input_tokens=1_000_000)
    assert price_call(call, {"claude-sonnet-4-5": ModelPrice(input_per_mtok=1,
                                                             output_per_mtok=1)}) == 1_000_000


def test_estimates_match_the_exact_price_and_never_fall_under_a_tier() -> None:
    from agent._pricing import Estimator

    estimator = Estimator()
    for provider, model in (("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4o"),
                            ("anthropic", "claude-haiku-4-5")):
        for input_tokens, output_tokens in ((1, 0), (700, 50), (12_345, 4_096),
                                            (150_000, 8_000), (300_000, 32_000)):
            exact = price_call(Call(tool="t", provider=provider, model=model,
                                    input_tokens=input_tokens, output_tokens=output_tokens))
            assert exact is not None
            estimate = estimator.cost_micro(provider, model, input_tokens, output_tokens)
            assert exact <= estimate + 1, (model, input_tokens)
            # Within a size whose top is past a price tier the higher tier is counted (a
            # long-context price at most doubles); elsewhere it is the price itself.
            assert estimate <= exact * 2 + 1, (model, input_tokens)
            if input_tokens < 100_000:
                assert abs(estimate - exact) <= 1, (model, input_tokens)


def test_estimates_of_unknown_and_overridden_models() -> None:
    from agent._pricing import Estimator

    assert Estimator().cost_micro("acme", "mystery-9", 1_000, 1_000) == 0
    override = {"acme/mystery-9": ModelPrice(input_per_mtok=2.0, output_per_mtok=10.0)}
    assert Estimator(override).cost_micro("acme", "mystery-9", 1_000, 1_000) == 12_000
