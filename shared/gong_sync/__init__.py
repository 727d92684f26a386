"""gong-sync: keep Postgres in step with Fivetran's Gong and Salesforce tables in BigQuery."""

__version__ = "0.1.0"
