"""The Kafka topics Flowline uses: the one place that names them and sets their configuration.

Every process (engine, handlers, gateway, projector) and the deploy tooling (local stack, Docker topic
creation) import this list from here; it lives in `schemas/` because adapters may import `schemas/`
but never `deploy/`.
Commands, step results, step requests, events and the engine's state changelog share one partition count
(`FLOWLINE_PARTITIONS`), because an instance id must map to the same partition everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.settings import env_int

DEFAULT_PARTITIONS = 6

# Input and payment topics
PAYMENTS_TRANSFERS = "payments.transfers"
PAYMENTS_COMMANDS = "payments.commands"
PAYMENTS_RESULTS = "payments.results"

# Workflow topics
WORKFLOW_COMMANDS = "workflow.commands"
WORKFLOW_STEP_RESULTS = "workflow.step-results"
WORKFLOW_STEPS_APPROVAL = "workflow.steps.approval"
WORKFLOW_STEPS_NOTIFICATION = "workflow.steps.notification"
WORKFLOW_STEPS_ACTION = "workflow.steps.action"
WORKFLOW_STEPS_EXTERNAL = "workflow.steps.external"
WORKFLOW_EVENTS = "workflow.events"
WORKFLOW_TEMPLATES = "workflow.templates"
WORKFLOW_DLQ = "workflow.dlq"

# Engine state: changelog of the engine's `instances` table (pass it as the table's `changelog_topic`).
ENGINE_INSTANCES_CHANGELOG = "flowline.engine.instances-changelog"

STEP_KINDS = ("approval", "notification", "action", "external")


def step_topic(kind: str) -> str:
    """Request topic of a step kind: `workflow.steps.<kind>`."""
    if kind not in STEP_KINDS:
        raise ValueError(f"unknown step kind {kind!r}; expected one of {STEP_KINDS}")
    return f"workflow.steps.{kind}"


def partitions_from_env() -> int:
    """The shared partition count (`FLOWLINE_PARTITIONS`, default 6)."""
    value = env_int("FLOWLINE_PARTITIONS")
    if value < 1:
        raise ValueError("FLOWLINE_PARTITIONS must be >= 1")
    return value


@dataclass(frozen=True)
class TopicSpec:
    name: str
    description: str
    compacted: bool = False
    # None: use the shared partition count (FLOWLINE_PARTITIONS).
    partitions: int | None = None
    configs: dict[str, str] = field(default_factory=dict)

    def num_partitions(self, shared: int | None = None) -> int:
        if self.partitions is not None:
            return self.partitions
        return shared if shared is not None else partitions_from_env()

    def topic_configs(self) -> dict[str, str]:
        configs = dict(self.configs)
        if self.compacted:
            configs.setdefault("cleanup.policy", "compact")
        return configs


TOPICS: list[TopicSpec] = [
    TopicSpec(PAYMENTS_TRANSFERS, "transfer and domain events from upstream payment services (input)"),
    TopicSpec(PAYMENTS_COMMANDS, "payment commands published by action adapters"),
    TopicSpec(PAYMENTS_RESULTS, "results of payment commands, awaited by action adapters"),
    TopicSpec(WORKFLOW_COMMANDS, "commands to instances, keyed by instance id"),
    TopicSpec(WORKFLOW_STEP_RESULTS, "handler results, keyed by instance id"),
    TopicSpec(WORKFLOW_STEPS_APPROVAL, "approval step requests"),
    TopicSpec(WORKFLOW_STEPS_NOTIFICATION, "notification step requests"),
    TopicSpec(WORKFLOW_STEPS_ACTION, "action step requests"),
    TopicSpec(WORKFLOW_STEPS_EXTERNAL, "external-call step requests"),
    TopicSpec(WORKFLOW_EVENTS, "instance outcomes for the projector and downstream consumers"),
    TopicSpec(WORKFLOW_TEMPLATES, "published templates, read by the engine as a global table", compacted=True),
    TopicSpec(WORKFLOW_DLQ, "undecodable or invalid input with the reason and the original bytes"),
    TopicSpec(ENGINE_INSTANCES_CHANGELOG, "changelog of the engine's instances table", compacted=True),
]

TOPIC_NAMES: list[str] = [t.name for t in TOPICS]


def get(name: str) -> TopicSpec:
    for spec in TOPICS:
        if spec.name == name:
            return spec
    raise KeyError(name)


class PrefixedTopics:
    """The topic names of one installation: every name with `topic_prefix` in front.

    Why a mixin: the engine's, the handlers' and the gateway's settings each spelled out the same prefixed
    names; they now inherit them from here (each class has a `topic_prefix` attribute).
    """

    topic_prefix: str

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def step_topic(self, kind: str) -> str:
        """Request topic of a step kind, prefixed."""
        return self.topic_prefix + step_topic(kind)

    def unprefixed(self, name: str) -> str:
        return name[len(self.topic_prefix):] if self.topic_prefix and name.startswith(self.topic_prefix) else name

    @property
    def commands_topic(self) -> str:
        return self.topic(WORKFLOW_COMMANDS)

    @property
    def results_topic(self) -> str:
        return self.topic(WORKFLOW_STEP_RESULTS)

    @property
    def events_topic(self) -> str:
        return self.topic(WORKFLOW_EVENTS)

    @property
    def changelog_topic(self) -> str:
        return self.topic(ENGINE_INSTANCES_CHANGELOG)

    @property
    def templates_topic(self) -> str:
        return self.topic(WORKFLOW_TEMPLATES)

    @property
    def dlq_topic(self) -> str:
        return self.topic(WORKFLOW_DLQ)

    @property
    def payments_commands_topic(self) -> str:
        return self.topic(PAYMENTS_COMMANDS)

    @property
    def payments_results_topic(self) -> str:
        return self.topic(PAYMENTS_RESULTS)
