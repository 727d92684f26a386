"""Cloud SQL for PostgreSQL: an instance, a database, and a user whose password is a secret."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from gong_sync_infra.platform import SecretArgs, StoredSecret


@dataclass
class DatabaseArgs:
    """Sizing and protection of the instance."""

    region: pulumi.Input[str]
    tier: str = "db-custom-1-3840"
    private_network: str | None = None  # a VPC self link: private IP only
    # The major version the tests run (Cloud SQL offers POSTGRES_18); configurable per stack.
    version: str = "POSTGRES_18"
    production: bool = False  # deletion protection on
    database: str = "gong_sync"
    user: str = "gong_sync"


class Database(pulumi.ComponentResource):
    """The target Postgres; functions reach it through the Cloud SQL connector."""

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gong-sync:data:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # No private network (None or the config's empty default) means a public IP that only
        # the Cloud SQL connector reaches; never an instance with no IP at all.
        ip: gcp.sql.DatabaseInstanceSettingsIpConfigurationArgsDict = {
            "ipv4_enabled": not args.private_network
        }
        if args.private_network:
            ip["private_network"] = args.private_network
        self.instance = gcp.sql.DatabaseInstance(
            name,
            region=args.region,
            database_version=args.version,
            deletion_protection=args.production,
            settings={
                "tier": args.tier,
                "edition": "ENTERPRISE",
                "availability_type": "REGIONAL" if args.production else "ZONAL",
                "backup_configuration": {
                    "enabled": True,
                    "point_in_time_recovery_enabled": True,
                    "start_time": "02:00",
                },
                "ip_configuration": ip,
                "deletion_protection_enabled": args.production,
            },
            opts=child,
        )
        self.database = gcp.sql.Database(
            f"{name}-db", name=args.database, instance=self.instance.name, opts=child
        )
        password = random.RandomPassword(f"{name}-password", length=32, special=False, opts=child)
        self.user = gcp.sql.User(
            f"{name}-user",
            name=args.user,
            instance=self.instance.name,
            password=password.result,
            # Dropping a Postgres role that owns objects fails; the instance goes with its users.
            deletion_policy="ABANDON",
            opts=child,
        )
        self.password = StoredSecret(
            f"{name}-password-secret",
            SecretArgs("gong-sync-db-password", password.result),
            opts=child,
        )
        self.connection_name = self.instance.connection_name
        self.register_outputs({"connection_name": self.connection_name})
