"""`deploy/stack up` on an existing stack keeps the partition count its topics have (lifecycle.up)."""

from __future__ import annotations

import dataclasses

from deploy.stackctl import lifecycle
from deploy.stackctl.kafka import existing_partitions


def test_the_stack_reads_its_topics_partition_count_from_the_broker(stack):
    assert existing_partitions(stack.profile) == stack.partitions
    # a profile whose default differs (the dev default changed from 2 to 1) keeps what the topics have
    defaulted = dataclasses.replace(stack.profile, partitions=stack.partitions + 1, partitions_given=False)
    assert lifecycle._keep_existing_partitions(defaulted).partitions == stack.partitions
    # FLOWLINE_PARTITIONS set: the configuration stands (ensure_topics then warns about the mismatch)
    told = dataclasses.replace(defaulted, partitions_given=True)
    assert lifecycle._keep_existing_partitions(told).partitions == stack.partitions + 1
