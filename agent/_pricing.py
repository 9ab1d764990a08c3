"""What a call cost, in integer micro-dollars.

Prices come from genai-prices (a maintained price table, bundled as a snapshot: no network);
``config.toml`` may override any model's price. A model neither knows gets ``None``: cost
unknown, tokens kept — never a silent $0.
"""

from __future__ import annotations

import math
import time
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
    """Cost from genai-prices, or ``None`` when it does not know the model.

    A model's price in a given hour is linear in each kind of token within each price tier
    (a tier, e.g. Anthropic's long-context price, applies to all tokens of a call whose
    input passes its threshold). So per-token prices are computed by the library itself once
    per model, hour and tier, and a call's cost is their exact Decimal sum, rounded as the
    library's own total would be. That is ~100x cheaper than the library's full calculation,
    which the metering proxy would otherwise pay before the end of every response. Prices
    that depend on the time of day go through the library every time.
    """
    provider = _PROVIDER_IDS.get(call.provider.lower(), call.provider.lower())
    hour = int(call.ts.timestamp()) // 3600
    for provider_id in (provider, None):
        thresholds = _thresholds(provider_id, call.model, hour)
        if thresholds is _UNKNOWN:
            continue
        if thresholds is None:
            return _price_with_library(call, provider_id)
        total_input = call.input_tokens + call.cache_read_tokens + call.cache_write_tokens
        band = sum(total_input > start for start in thresholds)
        rates = _band_rates(provider_id, call.model, hour, band)
        if rates is None:
            return _price_with_library(call, provider_id)
        units, scaled, divisor = rates
        writes_5m = call.cache_write_tokens - call.cache_write_1h_tokens
        if scaled is not None:
            # Integers: the same sum, exactly (see _band_rates), rounded half up.
            total = (call.input_tokens * scaled[0] + call.cache_read_tokens * scaled[1]
                     + writes_5m * scaled[2] + call.cache_write_1h_tokens * scaled[3]
                     + call.output_tokens * scaled[4])
            return (total + divisor // 2) // divisor
        counts = (call.input_tokens, call.cache_read_tokens, writes_5m,
                  call.cache_write_1h_tokens, call.output_tokens)
        return _micro(sum((n * unit for n, unit in zip(counts, units, strict=True)),
                          Decimal(0)))
    return None


#: Per-token prices with at most this many significant digits are also kept as integers.
_EXACT_DIGITS = 15


@lru_cache(maxsize=4096)
def _band_rates(provider_id: str | None, model: str, hour: int, band: int
                ) -> tuple[tuple[Decimal, ...], tuple[int, ...] | None, int] | None:
    """``_band_prices``, plus the same prices as integers of 10^-k dollars and 10^(k-6) (a
    micro-dollar in those units) when every price is a short decimal (as list prices are:
    $3 per MTok is 0.000003 a token). A token count (at most 10^8) times such a price has
    at most 24 digits, so the library's Decimal arithmetic (28 digits) is exact too, and
    the integer sum, rounded half up, is the same number of micro-dollars, in a tenth of
    the time. Prices that are not short decimals keep the Decimal sum."""
    units = _band_prices(provider_id, model, hour, band)
    if units is None:
        return None
    if any(len(unit.as_tuple().digits) > _EXACT_DIGITS or not unit.is_finite()
           or unit < 0 for unit in units):
        return units, None, 1
    exponent = max([6, *(-int(unit.as_tuple().exponent) for unit in units)])
    scaled = tuple(int(unit.scaleb(exponent)) for unit in units)
    if any(Decimal(n).scaleb(-exponent) != unit for n, unit in zip(scaled, units, strict=True)):
        return units, None, 1
    return units, scaled, 10 ** (exponent - 6)


_UNKNOWN: tuple[int, ...] = (-1,)


@lru_cache(maxsize=4096)
def _thresholds(provider_id: str | None, model: str, hour: int) -> tuple[int, ...] | None:
    """The input-token thresholds of the model's price tiers in that hour (empty: one flat
    price); None when its price depends on the time of day; ``_UNKNOWN`` for an unknown
    model."""
    from datetime import UTC, datetime

    from genai_prices import data_snapshot, types

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _provider, info = data_snapshot.get_snapshot().find_provider_model(
                model, None, provider_id, None)
    except (LookupError, ValueError):
        return _UNKNOWN
    conditional = info.prices if isinstance(info.prices, list) else []
    # (Price variants apply only with a price context, which we never pass.)
    if any(isinstance(c.constraint, types.TimeOfDateConstraint) for c in conditional):
        return None
    table = info.get_prices(datetime.fromtimestamp(hour * 3600, UTC))
    starts = {tier.start for value in vars(table).values()
              if isinstance(value, types.TieredPrices) for tier in value.tiers}
    return tuple(sorted(starts))


def _band_prices(provider_id: str | None, model: str, hour: int, band: int
                 ) -> tuple[Decimal, ...] | None:
    """Dollars per token of (fresh input, cache reads, 5-minute writes, 1-hour writes,
    output) for calls whose input falls in tier ``band``, as the library prices them."""
    from datetime import UTC, datetime

    from agent._events import Call

    thresholds = _thresholds(provider_id, model, hour)
    assert thresholds is not None
    assert thresholds is not _UNKNOWN
    # A representative input size inside the band (a tier applies above its start).
    size = 1_000_000 if not thresholds else (
        thresholds[0] if band == 0 else thresholds[band - 1] + 1)
    if size <= 0:
        return None
    at = datetime.fromtimestamp(hour * 3600, UTC)

    def total(**tokens: int) -> Decimal | None:
        return _library_total(Call(tool="-", provider="-", model=model, ts=at, **tokens),  # type: ignore[arg-type]
                              provider_id)

    parts = [total(input_tokens=size), total(cache_read_tokens=size),
             total(cache_write_tokens=size),
             total(cache_write_tokens=size, cache_write_1h_tokens=size),
             total(input_tokens=size, output_tokens=size)]
    known = [part for part in parts if part is not None]
    if len(known) != len(parts):
        return None
    fresh, read, write_5m, write_1h, with_output = known
    return (fresh / size, read / size, write_5m / size, write_1h / size,
            (with_output - fresh) / size)


def _library_total(call: Call, provider_id: str | None) -> Decimal | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = _calculator()(_library_usage(call), call.model, provider_id=provider_id,
                                   genai_request_timestamp=call.ts)
    except (LookupError, ValueError):
        return None
    return Decimal(result.total_price)


def _price_with_library(call: Call, provider_id: str | None) -> int | None:
    """The library's full calculation (tiered prices, variants, time-of-day prices)."""
    usage = _library_usage(call)
    calc = _calculator()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = calc(usage, call.model, provider_id=provider_id,
                          genai_request_timestamp=call.ts)
    except (LookupError, ValueError):
        return None
    return _micro(result.total_price)


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


class Estimator:
    """Quick estimates of a call's cost, for reserving budget before the call.

    ``price_call`` is exact and costs tens of microseconds (a ``Call`` to build, Decimal
    sums; several times that with cold caches, as on a proxy's request path between
    streams). An estimate needs no such precision: per-token rates are priced once per
    provider, model, hour and size of input (powers of two, priced at the top of each, so
    a price tier that starts inside a size is counted for all of it: never under the
    exact price but for rounding), then each estimate is two multiplications.
    """

    #: Output tokens the output rate is priced with.
    _OUTPUT = 1_000_000

    def __init__(self, overrides: dict[str, ModelPrice] | None = None) -> None:
        self.overrides = overrides or {}
        self._rates: dict[tuple[str, str, int, int], tuple[float, float]] = {}

    def cost_micro(self, provider: str, model: str, input_tokens: int, output_tokens: int
                   ) -> int:
        """The estimated cost in micro-dollars (0 for a model nobody prices)."""
        size = max(input_tokens, 1).bit_length()
        key = (provider, model, int(time.time()) // 3600, size)
        rates = self._rates.get(key)
        if rates is None:
            if len(self._rates) >= 4096:
                self._rates.clear()
            rates = self._rates[key] = self._price_rates(provider, model, 1 << size)
        return math.ceil(input_tokens * rates[0] + output_tokens * rates[1])

    def _price_rates(self, provider: str, model: str, size: int) -> tuple[float, float]:
        from agent._events import Call

        def cost(**tokens: int) -> int | None:
            return price_call(Call(tool="-", provider=provider, model=model, **tokens),  # type: ignore[arg-type]
                              self.overrides)

        base = cost(input_tokens=size)
        with_output = cost(input_tokens=size, output_tokens=self._OUTPUT)
        if base is None or with_output is None:
            return 0.0, 0.0
        return base / size, (with_output - base) / self._OUTPUT
