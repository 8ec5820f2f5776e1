"""The local stack: services on loopback, migrations and demo data."""
