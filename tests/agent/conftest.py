"""Fixtures shared by agent, selection and pipeline tests: the scripted provider and a model client."""

from __future__ import annotations

import litellm
import pytest

from agent.model import ModelClient, ModelSettings, PriceOverride, RoleModels
from agent.scripted import ScriptedLLM, register_scripted_provider

SCRIPTED_PRICE = PriceOverride(input_per_mtok=1.0, output_per_mtok=5.0)


@pytest.fixture
def scripted():
    """A fresh scripted handler registered in litellm for this test (litellm's map is process-wide)."""
    before = list(litellm.custom_provider_map)
    handler = register_scripted_provider(ScriptedLLM())
    yield handler
    litellm.custom_provider_map = before


def scripted_settings(relevance: str = "scripted/rel", primary: str = "scripted/main",
                      selector: str = "scripted/sel", **overrides) -> ModelSettings:
    """Settings whose three roles use scripted models, priced so budgets apply, with fast retries."""
    prices = {name: SCRIPTED_PRICE for name in (relevance, primary, selector)}
    values = {"roles": RoleModels(relevance=relevance, primary=primary, selector=selector),
              "retry_base_delay_s": 0.01, "retry_max_delay_s": 0.05, "price_overrides": prices}
    values.update(overrides)
    return ModelSettings(**values)


@pytest.fixture
def model_client(scripted) -> ModelClient:
    return ModelClient(scripted_settings())
