"""Settings: one object from env vars (CUSTSCORE_*) and an optional TOML file, passed down."""
