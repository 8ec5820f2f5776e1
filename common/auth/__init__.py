"""Callers: who is calling (tokens), and what they may do where (callers)."""
