"""Cost arithmetic and the recommendation rule."""

from __future__ import annotations

import pytest

from quantbench.analysis.cost import Candidate, price_for, recommend, usd_per_million_tokens


def test_cost_per_million_tokens() -> None:
    # $3.60 per GPU-hour serving 1000 tokens/s on one GPU: 3.6M tokens an hour -> $1 per million.
    assert usd_per_million_tokens(3.6, 1, 1000.0) == pytest.approx(1.0)
    # Two GPUs at the same total rate cost twice as much.
    assert usd_per_million_tokens(3.6, 2, 1000.0) == pytest.approx(2.0)
    assert usd_per_million_tokens(3.6, 1, 0.0) is None
    with pytest.raises(ValueError, match="price"):
        usd_per_million_tokens(-1.0, 1, 10.0)


def test_price_of_a_pool_falls_back_to_any_pool() -> None:
    prices = {"h100": 4.0, "*": 2.0}
    assert price_for(prices, "h100") == ("h100", 4.0)
    assert price_for(prices, "l40s") == ("l40s", 2.0)
    assert price_for(prices, None) == (None, 2.0)
    assert price_for({"h100": 4.0}, "l40s") is None


def test_recommendation_is_the_cheapest_non_inferior_variant_meeting_the_slo() -> None:
    candidates = [
        Candidate("bf16", 0.76, non_inferior=True, meets_slo=True),
        Candidate("fp8", 0.32, non_inferior=True, meets_slo=True),
        Candidate("awq", 0.20, non_inferior=False, meets_slo=True),  # cheaper, but accuracy not shown
        Candidate("gptq", None, non_inferior=True, meets_slo=False),  # never met the SLO
    ]
    best, ranked = recommend(candidates)
    assert best == "fp8"
    assert [c.variant for c in ranked] == ["fp8", "bf16"]
    assert recommend([Candidate("awq", 0.2, non_inferior=False, meets_slo=True)]) == (None, [])
