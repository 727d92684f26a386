"""Secrets from Secret Manager, by resource name; values never reach a log."""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

from gong_sync.settings import ConfigError, Settings


@functools.cache
def _client() -> Any:
    # Imported lazily: only the cloud runtime reads secrets.
    from google.cloud import secretmanager

    endpoint = os.environ.get("GONG_SYNC_SECRET_MANAGER_ENDPOINT")
    if endpoint:  # a local stand-in speaking Secret Manager's REST API (tests)
        from google.auth.credentials import AnonymousCredentials

        return secretmanager.SecretManagerServiceClient(
            transport="rest",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
    return secretmanager.SecretManagerServiceClient()


def access(name: str, client: Any = None) -> str:
    """The payload of a secret version (`projects/P/secrets/S/versions/V`)."""
    if not name.startswith("projects/") or "/secrets/" not in name:
        raise ConfigError(
            f"secret name must look like projects/P/secrets/S/versions/latest, got {name!r}"
        )
    if "/versions/" not in name:
        name = f"{name}/versions/latest"
    response = (client or _client()).access_secret_version(request={"name": name})
    return str(response.payload.data.decode("utf-8")).strip()


def resolve(settings: Settings, client: Any = None) -> Settings:
    """Settings with secret values filled in from the secret names they carry."""
    cloud, pg = settings.cloud, settings.postgres
    if cloud.db_password_secret:
        pg = dataclasses.replace(pg, password=access(cloud.db_password_secret, client))
    if cloud.slack_webhook_secret:
        cloud = dataclasses.replace(
            cloud, slack_webhook_url=access(cloud.slack_webhook_secret, client)
        )
    return dataclasses.replace(settings, postgres=pg, cloud=cloud)
