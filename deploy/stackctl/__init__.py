"""The local Flowline stack: Apache Kafka (KRaft, single node), PostgreSQL and the Flowline processes.

Used by the CLI (`flowline stack up|down|status`, `deploy/stack`) and by the pytest fixtures in
`tests/conftest.py`. Everything runs on loopback ports, detached from the calling process, with its data,
logs and pid files under the profile's state directory (`<repo>/.flowline/<profile>`). If
`FLOWLINE_KAFKA_BOOTSTRAP` / `DATABASE_URL` are set, those external services are used instead of starting
local ones (topics are still created and migrations still applied).

One module per concern: `profile` (ports, URLs, directories), `supervise` (pid files, stopping, ports),
`kafka`, `postgres`, `processes` (the registry of Flowline processes), `summary` (what `up` prints) and
`lifecycle` (`up`, `down`, `status`). The package is not called `deploy/stack` because the bash script
`deploy/stack` (the README's command) has that name.
"""

from deploy.stackctl.kafka import ensure_topics, kafka_process, kafka_ready, start_kafka, stop_kafka
from deploy.stackctl.lifecycle import down, is_up, leftover_processes, status, up, wipe_state
from deploy.stackctl.postgres import (
    migrate,
    pg_processes,
    postgres_process,
    postgres_ready,
    start_postgres,
    stop_postgres,
)
from deploy.stackctl.processes import PROCESSES, ProcessSpec, start_process, stop_process
from deploy.stackctl.profile import REPO_ROOT, Profile
from deploy.stackctl.summary import print_summary, wall_seconds
from deploy.stackctl.supervise import StackError

__all__ = [
    "PROCESSES",
    "REPO_ROOT",
    "ProcessSpec",
    "Profile",
    "StackError",
    "down",
    "ensure_topics",
    "is_up",
    "kafka_process",
    "kafka_ready",
    "leftover_processes",
    "migrate",
    "pg_processes",
    "postgres_process",
    "postgres_ready",
    "print_summary",
    "start_kafka",
    "start_postgres",
    "start_process",
    "status",
    "stop_kafka",
    "stop_postgres",
    "stop_process",
    "up",
    "wall_seconds",
    "wipe_state",
]
