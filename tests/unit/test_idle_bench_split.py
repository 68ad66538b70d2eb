"""bench/idle_bench.py reports an idle stack the way the instrument (../shared/peers) counts it."""

from bench.idle_bench import split


def test_server_is_the_broker_and_postgres_and_mcp_is_not_counted():
    cores = {"kafka": 0.02, "postgres": 0.001, "engine": 0.005, "projector": 0.001, "handler-action": 0.001,
             "mcp": 0.002, "mailcatcher": 0.0}
    parts = split(cores)
    assert round(parts["server"], 6) == 0.021
    assert round(parts["worker"], 6) == 0.007
