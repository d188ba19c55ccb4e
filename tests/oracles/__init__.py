"""Plain-Python oracles the engine's tests compare against."""
