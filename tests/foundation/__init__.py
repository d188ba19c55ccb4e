"""Tests of the foundation: embedded stack, topic admin, settings, stack CLI."""
