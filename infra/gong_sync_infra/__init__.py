"""The Pulumi program of gong-sync, as ComponentResources with dataclass Args."""
