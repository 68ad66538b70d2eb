"""deploy/stackctl and schemas/topics.py configuration, without starting anything."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deploy import stackctl as stack
from deploy.stackctl import supervise
from schemas import topics


def test_profiles_have_distinct_default_ports_and_state_dirs():
    dev = stack.Profile.load("dev", env={})
    test = stack.Profile.load("test", env={})
    assert (dev.kafka_port, dev.controller_port, dev.postgres_port, dev.gateway_port) == (19092, 19093, 15432, 8700)
    assert (test.kafka_port, test.controller_port, test.postgres_port) == (29092, 29093, 25432)
    assert dev.state_dir == stack.REPO_ROOT / ".flowline" / "dev"
    assert test.state_dir == stack.REPO_ROOT / ".flowline" / "test"
    assert dev.kafka_bootstrap == "127.0.0.1:19092"
    assert dev.database_url == "postgresql://postgres@127.0.0.1:15432/flowline"
    assert (dev.partitions, test.partitions) == (1, 6)
    assert not dev.external_kafka and not dev.external_postgres


def test_env_overrides_and_external_services(tmp_path):
    env = {
        "FLOWLINE_KAFKA_BOOTSTRAP": "kafka.example:9092",
        "DATABASE_URL": "postgresql://u:p@db:5432/x",
        "FLOWLINE_PARTITIONS": "12",
        "FLOWLINE_GATEWAY_PORT": "9000",
        "FLOWLINE_STATE_DIR": str(tmp_path),
        "FLOWLINE_PROFILE": "test",
    }
    p = stack.Profile.load(env=env)
    assert p.name == "test"
    assert p.external_kafka and p.kafka_bootstrap == "kafka.example:9092"
    assert p.external_postgres and p.database_url == "postgresql://u:p@db:5432/x"
    assert p.partitions == 12 and p.gateway_port == 9000 and p.state_dir == tmp_path
    assert p.process_env()["FLOWLINE_PARTITIONS"] == "12"


def test_unknown_profile_is_rejected():
    with pytest.raises(ValueError):
        stack.Profile.load("prod", env={})


def test_topic_list_is_complete_and_consistent():
    names = topics.TOPIC_NAMES
    assert len(names) == len(set(names))
    for required in ("payments.transfers", "workflow.commands", "workflow.step-results", "workflow.events",
                     "workflow.templates", "workflow.dlq", "flowline.engine.instances-changelog"):
        assert required in names
    for kind in topics.STEP_KINDS:
        assert topics.step_topic(kind) in names
    compacted = {t.name for t in topics.TOPICS if t.topic_configs().get("cleanup.policy") == "compact"}
    assert compacted == {"workflow.templates", "flowline.engine.instances-changelog"}
    shared = {t.name for t in topics.TOPICS if t.partitions is None}
    assert {"workflow.commands", "workflow.step-results", "workflow.events",
            "flowline.engine.instances-changelog"} <= shared
    assert all(t.num_partitions(6) == 6 for t in topics.TOPICS if t.partitions is None)


def test_stale_pid_file_is_detected_and_removed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(json.dumps({"pid": proc.pid, "create_time": 0}))
    assert supervise.live_process(pid_file) is None
    assert not pid_file.exists()


def test_pid_file_of_a_live_process_is_recognised_but_not_a_reused_pid(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pid_file = tmp_path / "y.pid"
        supervise.write_pid_file(pid_file, proc.pid)
        assert supervise.live_process(pid_file).pid == proc.pid
        # same pid, different start time: a reused pid, not ours
        data = json.loads(pid_file.read_text())
        data["create_time"] -= 3600
        pid_file.write_text(json.dumps(data))
        assert supervise.live_process(pid_file) is None
    finally:
        proc.kill()
        proc.wait()


def test_the_start_summary_counts_from_the_script_start_venv_included() -> None:
    """The summary's total is the wall time since `deploy/stack` started (venv bootstrap included), not
    only the time spent inside `up()`; a stale or missing start time falls back to `up()`'s own."""
    assert stack.wall_seconds(1000.0, 1010.0, {"FLOWLINE_STACK_STARTED_AT": "880.5"}) == 129.5
    assert stack.wall_seconds(1000.0, 1010.0, {}) == 10.0
    assert stack.wall_seconds(10_000.0, 10_010.0, {"FLOWLINE_STACK_STARTED_AT": "1.0"}) == 10.0  # hours old
    assert stack.wall_seconds(1000.0, 1010.0, {"FLOWLINE_STACK_STARTED_AT": "1005.0"}) == 10.0  # later
    assert stack.wall_seconds(1000.0, 1010.0, {"FLOWLINE_STACK_STARTED_AT": "junk"}) == 10.0


def test_the_dev_broker_runs_c1_only_unless_told_otherwise(tmp_path):
    """The local broker's JIT (deploy/stackctl/kafka.py; docs/performance.md, "The broker's CPU"): the
    stack's flags by default, and FLOWLINE_KAFKA_JVM_OPTS replaces them."""
    from deploy.stackctl import kafka

    profile = stack.Profile.load("test", env={"FLOWLINE_STATE_DIR": str(tmp_path)})
    cmd = kafka.broker_command(profile, tmp_path / "server.properties")
    assert "-XX:TieredStopAtLevel=1" in cmd and cmd.index("-XX:TieredStopAtLevel=1") < cmd.index("kafka.Kafka")
    assert "-Xmx768m" in cmd
    other = stack.Profile.load("test", env={"FLOWLINE_STATE_DIR": str(tmp_path),
                                            "FLOWLINE_KAFKA_JVM_OPTS": "-XX:+UseSerialGC -XX:CICompilerCount=2"})
    cmd = kafka.broker_command(other, tmp_path / "server.properties")
    assert "-XX:+UseSerialGC" in cmd and "-XX:CICompilerCount=2" in cmd and "-XX:TieredStopAtLevel=1" not in cmd


def test_an_existing_stack_keeps_its_partition_count_unless_told(monkeypatch):
    from deploy.stackctl import lifecycle

    dev = stack.Profile.load("dev", env={})
    assert not dev.partitions_given
    monkeypatch.setattr(lifecycle, "existing_partitions", lambda profile: 2)  # made when the default was 2
    assert lifecycle._keep_existing_partitions(dev).partitions == 2
    told = stack.Profile.load("dev", env={"FLOWLINE_PARTITIONS": "1"})
    assert told.partitions_given and lifecycle._keep_existing_partitions(told).partitions == 1
    monkeypatch.setattr(lifecycle, "existing_partitions", lambda profile: None)  # a new stack
    assert lifecycle._keep_existing_partitions(dev).partitions == 1
