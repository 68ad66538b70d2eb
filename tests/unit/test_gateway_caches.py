"""The gateway's in-memory caches are bounded.

Why: the compiled-template cache of `gateway/instances.py` (transitions and agent actions) was a plain
dict keyed by template version; every version ever read stayed in memory for the gateway's lifetime.
"""

from __future__ import annotations

from gateway import instances


def test_the_compiled_template_cache_keeps_only_the_most_recently_used_versions() -> None:
    cache = instances._COMPILED
    saved = dict(cache.items())
    try:
        for version in range(1, 5_001):
            cache[("wf_many_versions", version)] = object()  # type: ignore[assignment]
            cache.get(("wf_hot", 1))
            if version == 1:
                cache[("wf_hot", 1)] = object()  # type: ignore[assignment]
        assert len(cache) < 5_000
        assert len(cache) <= instances.COMPILED_TEMPLATES_KEPT
        assert ("wf_hot", 1) in cache  # read on every request: kept
        assert ("wf_many_versions", 1) not in cache and ("wf_many_versions", 5_000) in cache
    finally:
        cache.clear()
        cache.update(saved)
