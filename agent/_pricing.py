"""What a call cost, in integer micro-dollars.

Prices come from genai-prices (a maintained price table, bundled as a snapshot: no network);
``config.toml`` may override any model's price. A model neither knows gets ``None``: cost
unknown, tokens kept — never a silent $0.
"""

from __future__ import annotations

import warnings
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent._config import ModelPrice
    from agent._events import Call

MICRO = Decimal(1_000_000)
PER_MTOK = Decimal(1_000_000)


def _micro(dollars: Decimal) -> int:
    """Round half up to whole micro-dollars."""
    return int((dollars * MICRO).to_integral_value(rounding="ROUND_HALF_UP"))


def price_with_override(call: Call, price: ModelPrice) -> int:
    """Cost from a per-MTok price of ``config.toml``.

    Cache reads default to a tenth of the input price and cache writes to 1.25× (one hour: 2×),
    the ratios the major providers use, unless the override names them.
    """
    input_price = Decimal(str(price.input_per_mtok))
    cache_read = (Decimal(str(price.cache_read_per_mtok)) if price.cache_read_per_mtok is not None
                  else input_price / 10)
    cache_write = (Decimal(str(price.cache_write_per_mtok))
                   if price.cache_write_per_mtok is not None else input_price * Decimal("1.25"))
    cache_write_1h = (Decimal(str(price.cache_write_1h_per_mtok))
                      if price.cache_write_1h_per_mtok is not None else input_price * 2)
    output_price = Decimal(str(price.output_per_mtok))
    writes_5m = call.cache_write_tokens - call.cache_write_1h_tokens
    total = (call.input_tokens * input_price + call.output_tokens * output_price
             + call.cache_read_tokens * cache_read + writes_5m * cache_write
             + call.cache_write_1h_tokens * cache_write_1h) / PER_MTOK
    return _micro(total)


def price_from_library(call: Call) -> int | None:
    """Cost from genai-prices, or ``None`` when it does not know the model."""
    usage = _library_usage(call)
    calc = _calculator()
    provider = _PROVIDER_IDS.get(call.provider.lower(), call.provider.lower())
    for provider_id in (provider, None):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = calc(usage, call.model, provider_id=provider_id,
                              genai_request_timestamp=call.ts)
        except (LookupError, ValueError):
            continue
        return _micro(result.total_price)
    return None


#: Providers that run on the developer's own machine: no bill, so a known $0.
LOCAL_PROVIDERS = frozenset({"ollama", "local"})


def price_call(call: Call, overrides: dict[str, ModelPrice] | None = None) -> int | None:
    """The call's cost in micro-dollars: an override for its model first, then the library.

    Models served locally (Ollama) cost nothing; any other model nobody knows the price of
    gives ``None`` (cost unknown), never 0.
    """
    if overrides:
        override = (overrides.get(f"{call.provider}/{call.model}")
                    or overrides.get(call.model))
        if override is not None:
            return price_with_override(call, override)
    if call.provider.lower() in LOCAL_PROVIDERS:
        return 0
    return price_from_library(call)


# Names tools use for providers that genai-prices spells differently.
_PROVIDER_IDS = {
    "claude": "anthropic",
    "gemini": "google",
    "vertex": "google",
    "azure-openai": "azure",
}


def _library_usage(call: Call) -> object:
    from genai_prices import Usage

    # genai-prices counts cached tokens inside input_tokens; our events keep them apart.
    fields: dict[str, int] = {
        "input_tokens": call.input_tokens + call.cache_read_tokens + call.cache_write_tokens,
        "output_tokens": call.output_tokens,
    }
    if call.cache_read_tokens:
        fields["cache_read_tokens"] = call.cache_read_tokens
    if call.cache_write_tokens:
        fields["cache_write_tokens"] = call.cache_write_tokens
    if call.cache_write_1h_tokens:
        fields["cache_write_1h_tokens"] = call.cache_write_1h_tokens
    return Usage(**fields)


@lru_cache(maxsize=1)
def _calculator():  # type: ignore[no-untyped-def]
    # Imported on first use: the price table takes a quarter of a second to load, and
    # `meterline status` never needs it.
    from genai_prices import calc_price

    return calc_price
