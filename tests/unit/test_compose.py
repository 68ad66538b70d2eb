"""docker-compose.kafka.yml stays in sync with the processes and images we document."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.kafka.yml"

FLOWLINE_SERVICES = {
    "engine": ["flowline", "engine"],
    "handler-approval": ["flowline", "handler", "approval"],
    "handler-notification": ["flowline", "handler", "notification"],
    "handler-action": ["flowline", "handler", "action"],
    "handler-external": ["flowline", "handler", "external"],
    "gateway": ["flowline", "gateway"],
    "projector": ["flowline", "projector"],
}


def load() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_parses_and_names_every_service() -> None:
    services = load()["services"]
    assert set(services) == {"kafka", "postgres", "topics", *FLOWLINE_SERVICES}


def test_infrastructure_images_are_pinned() -> None:
    services = load()["services"]
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"] == "postgres:17"


def test_flowline_services_run_the_flowline_command_from_our_dockerfile() -> None:
    services = load()["services"]
    assert (ROOT / "deploy" / "Dockerfile").exists()
    for name, command in {**FLOWLINE_SERVICES, "topics": ["flowline", "stack", "up", "--no-processes"]}.items():
        svc = services[name]
        assert svc["command"] == command, name
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile", name
        env = svc["environment"]
        assert env["FLOWLINE_KAFKA_BOOTSTRAP"] == "kafka:9092", name
        assert env["DATABASE_URL"].startswith("postgresql://"), name


def test_topic_job_runs_after_kafka_and_postgres_are_healthy() -> None:
    services = load()["services"]
    deps = services["topics"]["depends_on"]
    assert deps["kafka"]["condition"] == "service_healthy"
    assert deps["postgres"]["condition"] == "service_healthy"
    for name in FLOWLINE_SERVICES:
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
