"""The sandbox's reference fleet, as the rebalance tests use it."""

from tests.automation.rebalance.conftest import fleet  # noqa: F401
