"""The embedded local stack: a real Postgres server and a BigQuery emulator with demo data."""
