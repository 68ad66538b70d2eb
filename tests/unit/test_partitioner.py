"""The engine's partitioner remembers recent keys' hashes (issue 15): it must still put every record where
Kafka's default partitioner does, or an instance's records would leave the partition that holds its state."""

import random

from aiokafka.partitioner import DefaultPartitioner, murmur2

from streams.transactional import CachedPartitioner, _key_hash, partition_for


def test_cached_partitioner_agrees_with_the_default_one():
    rng = random.Random(15)
    cached, default = CachedPartitioner(), DefaultPartitioner()
    keys = [rng.randbytes(rng.randint(0, 40)) for _ in range(3_000)] + [b"wfi_" + bytes(26)]
    for partitions in (1, 2, 3, 6, 12, 64):
        all_partitions = list(range(partitions))
        for key in keys + keys[:500]:  # the second time from the cache
            expected = default(key, all_partitions, all_partitions)
            assert cached(key, all_partitions, all_partitions) == expected
            assert partition_for(key, partitions) == expected == (murmur2(key) & 0x7FFFFFFF) % partitions


def test_a_bytearray_key_is_hashed_like_its_bytes_and_no_key_goes_to_an_available_partition():
    cached = CachedPartitioner()
    assert cached(bytearray(b"wfi_abc"), [0, 1, 2], [0, 1, 2]) == DefaultPartitioner()(b"wfi_abc", [0, 1, 2], [])
    assert {cached(None, [0, 1, 2], [2]) for _ in range(20)} == {2}


def test_the_cache_is_bounded():
    for n in range(_key_hash.cache_info().maxsize + 100):
        _key_hash(b"k%d" % n)
    assert _key_hash.cache_info().currsize == _key_hash.cache_info().maxsize
