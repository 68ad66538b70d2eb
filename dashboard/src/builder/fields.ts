// One form per step type: every config key core/validation.py accepts (STEP_CONFIG_KEYS), with the
// editor that suits its value. A value an editor cannot show (say, a list of approvers) falls back to a
// JSON box for that one key, so opening and saving a template never changes it.
import type { StepType } from "./model";

export type FieldKind = "text" | "number" | "select" | "target" | "approvers" | "map" | "json";
export type Field = { key: string; label: string; kind: FieldKind; options?: string[]; hint?: string };

const ON_FAILURE = ["retry", "skip", "fail_workflow", "human_review"];
const failure: Field[] = [
  { key: "retry_config", label: "Retries", kind: "json", hint: '{"max_retries": 3, "backoff_ms": 1000}' },
  { key: "on_failure", label: "On failure", kind: "select", options: ON_FAILURE },
  { key: "review_approvers", label: "Review approvers (on_failure human_review)", kind: "approvers" },
  { key: "review_timeout_hours", label: "Review timeout (hours)", kind: "number" },
  { key: "failure_notification", label: "Failure notification", kind: "json", hint: '{"type": "webhook", "url": "https://…"}' },
  { key: "timeout_seconds", label: "Timeout (seconds, at most 300)", kind: "number" },
];

export const FIELDS: Record<StepType, Field[]> = {
  condition: [
    { key: "expression", label: "Expression", kind: "text", hint: "trigger.amount <= 1000" },
    { key: "if_true", label: "If true", kind: "target" },
    { key: "if_false", label: "If false", kind: "target" },
  ],
  approval: [
    { key: "approvers", label: "Approvers", kind: "approvers" },
    { key: "level", label: "Level", kind: "select", options: ["SINGLE", "DUAL", "COMMITTEE", "AUTO"] },
    { key: "quorum", label: "Quorum (COMMITTEE)", kind: "number" },
    { key: "timeout_hours", label: "Timeout (hours)", kind: "number" },
    { key: "on_timeout", label: "On timeout", kind: "json", hint: '"escalate" or {"action": "escalate", "approvers": …, "then": "fail"}' },
    { key: "escalate_to", label: "Escalate to", kind: "approvers" },
    { key: "on_reject", label: "On reject", kind: "target" },
    { key: "description", label: "Description for approvers", kind: "text" },
  ],
  action: [
    { key: "action", label: "Action", kind: "select", options: ["execute_transfer", "simulate_transfer", "http_request"] },
    { key: "params", label: "Parameters", kind: "map" },
    { key: "success_condition", label: "Success condition", kind: "text" },
    ...failure,
  ],
  wait: [
    { key: "until", label: "Until (ISO time or placeholder)", kind: "text" },
    { key: "duration_seconds", label: "Duration (seconds)", kind: "number" },
    { key: "duration_minutes", label: "Duration (minutes)", kind: "number" },
    { key: "duration_hours", label: "Duration (hours)", kind: "number" },
    { key: "condition", label: "Condition (poll until true)", kind: "text" },
    { key: "poll_interval_seconds", label: "Poll interval (seconds)", kind: "number" },
    { key: "timeout_hours", label: "Timeout (hours)", kind: "number" },
    { key: "on_timeout", label: "On timeout", kind: "select", options: ["fail", "continue"] },
  ],
  notification: [
    { key: "channel", label: "Channel", kind: "select", options: ["webhook", "email"] },
    { key: "type", label: "Channel (legacy key 'type')", kind: "json" },
    { key: "url", label: "Webhook URL", kind: "text" },
    { key: "headers", label: "Headers", kind: "map" },
    { key: "body", label: "Body", kind: "json" },
    { key: "secret_name", label: "Signing secret name", kind: "text" },
    { key: "to", label: "To (address or list)", kind: "json", hint: '"ops@example.com"' },
    { key: "subject", label: "Subject", kind: "text" },
    { key: "text", label: "Text", kind: "text" },
    ...failure,
  ],
  external: [
    { key: "url", label: "URL", kind: "text" },
    { key: "method", label: "Method", kind: "select", options: ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] },
    { key: "headers", label: "Headers", kind: "map" },
    { key: "query", label: "Query", kind: "map" },
    { key: "body", label: "Body", kind: "json" },
    { key: "mode", label: "Mode", kind: "select", options: ["sync", "async"] },
    { key: "completion_timeout_hours", label: "Completion timeout (hours, async)", kind: "number" },
    { key: "success_condition", label: "Success condition", kind: "text" },
    { key: "extract_fields", label: "Extract fields", kind: "map", hint: "name → response.body.x" },
    ...failure,
  ],
};
