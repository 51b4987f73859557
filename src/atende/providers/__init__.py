"""Gateway registry: one `Provider` per `ProviderName`, and shape-based detection for the
generic webhook URL (`POST /api/webhooks/whatsapp`)."""

from __future__ import annotations

from typing import Any

from atende.providers.base import Provider
from atende.providers.cloud import CloudProvider
from atende.providers.connection_service import ConnectionServiceProvider
from atende.providers.evolution import EvolutionProvider
from atende.providers.waha import WahaProvider
from atende.types import ProviderName

PROVIDERS: dict[ProviderName, Provider] = {
    ProviderName.EVOLUTION: EvolutionProvider(),
    ProviderName.WAHA: WahaProvider(),
    ProviderName.CLOUD: CloudProvider(),
    ProviderName.CONNECTION_SERVICE: ConnectionServiceProvider(),
}

# Most specific shape first: Meta's `object`/`entry`, Evolution's `instance`, WAHA's `payload`;
# the connection service's `matches` refuses all three envelopes, so it can go last.
DETECTION_ORDER = (
    ProviderName.CLOUD,
    ProviderName.EVOLUTION,
    ProviderName.WAHA,
    ProviderName.CONNECTION_SERVICE,
)


def get_provider(name: ProviderName | str) -> Provider:
    """The provider registered under `name`; ValueError for an unknown or unregistered name."""
    try:
        return PROVIDERS[ProviderName(name)]
    except (ValueError, KeyError) as exc:
        raise ValueError(f"unknown WhatsApp provider {name!r}") from exc


def detect_provider(payload: Any) -> Provider | None:
    """The provider whose webhook shape `payload` has, or None."""
    for name in DETECTION_ORDER:
        provider = PROVIDERS.get(name)
        if provider is not None and provider.matches(payload):
            return provider
    return None


__all__ = ["DETECTION_ORDER", "PROVIDERS", "detect_provider", "get_provider"]
