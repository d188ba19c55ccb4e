"""Replay of historical streams, synthetic generator, offline oracle and benchmark reports."""
