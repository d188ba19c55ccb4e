"""The Faust app: topics, codecs, agents, Redis state store, alerts, timers, web views."""
