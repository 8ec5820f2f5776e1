"""Adapters: Postgres, Redis and Firestore behind small interfaces the core calls."""
