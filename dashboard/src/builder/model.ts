// The template document as the builder edits it, and the graph derived from it. Pure functions only:
// the server (core/validation.py) is the authority on what is valid; this file mirrors only the routing
// rules (core/template.py parse_target) that the graph needs to draw arrows.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Config = { [key: string]: Json };
export type StepType = "approval" | "condition" | "action" | "wait" | "notification" | "external";
export type Step = { type: StepType; name: string; id?: string; description?: string; config?: Config };
export type TemplateDoc = {
  name: string;
  description?: string;
  trigger_type?: string;
  trigger_config?: Config;
  steps?: Step[];
  /** A state-machine template (docs/state-machines.md) has these instead of `steps`. */
  states?: MachineState[];
  transitions?: MachineTransition[];
  status?: string;
  metadata?: Config;
};

export type Terminal = "COMPLETED" | "FAILED" | "CANCELLED" | boolean;
export type MachineState = { name: string; description?: string; entry_actions?: Step[]; exit_actions?: Step[]; terminal?: Terminal };
export type MachineTransition = {
  from: string;
  to: string;
  description?: string;
  condition?: string;
  automatic?: boolean;
  action?: Step;
  requires_approval?: Config;
  roles?: string[];
  after_seconds?: number;
  after_minutes?: number;
  after_hours?: number;
  at?: string | number;
};

/** The time keys of a transition (core/machine.py TIME_KEYS): at most one; any of them makes it time-based. */
export const AFTER_UNITS = ["seconds", "minutes", "hours"] as const;
export type AfterUnit = (typeof AFTER_UNITS)[number];
export type Timing = { kind: "none" } | { kind: "after"; amount: number | undefined; unit: AfterUnit } | { kind: "at"; at: string };

export function timingOf(t: MachineTransition): Timing {
  for (const unit of AFTER_UNITS) {
    const amount = t[`after_${unit}`];
    if (amount !== undefined) return { kind: "after", amount, unit };
  }
  if (t.at !== undefined) return { kind: "at", at: String(t.at) };
  return { kind: "none" };
}

/** The transition with `timing` as its only time key (switching kind or unit drops the others). */
export function withTiming(t: MachineTransition, timing: Timing): MachineTransition {
  const rest: MachineTransition = { ...t };
  for (const unit of AFTER_UNITS) delete rest[`after_${unit}`];
  delete rest.at;
  if (timing.kind === "after" && timing.amount !== undefined) rest[`after_${timing.unit}`] = timing.amount;
  if (timing.kind === "after" && timing.amount === undefined) rest[`after_${timing.unit}`] = 0;
  if (timing.kind === "at") rest.at = timing.at;
  return rest;
}

/** "after 2 hours" / "at {{trigger.review_by}}" / "" : what the graph and labels say about a transition's time. */
export function timingText(t: MachineTransition): string {
  const timing = timingOf(t);
  if (timing.kind === "after") return `after ${timing.amount ?? 0} ${timing.unit}`;
  if (timing.kind === "at") return `at ${timing.at}`;
  return "";
}

/** The same test as core/machine.py is_machine: a document with states or transitions is a state machine. */
export const isMachine = (doc: TemplateDoc): boolean => "states" in doc || "transitions" in doc;

/** Rename a state and every transition that names it (a state's name is its identity in transitions). */
export function renameState(doc: TemplateDoc, index: number, name: string): TemplateDoc {
  const old = doc.states?.[index]?.name;
  const states = (doc.states ?? []).map((s, i) => (i === index ? { ...s, name } : s));
  const rename = (n: string) => (n === old ? name : n);
  const transitions = doc.transitions?.map((t) => (t.from === old || t.to === old ? { ...t, from: rename(t.from), to: rename(t.to) } : t));
  return transitions ? { ...doc, states, transitions } : { ...doc, states };
}

/** The few words drawn on a transition's edge (the full label is its accessible name). */
export function transitionTag(t: MachineTransition): string | undefined {
  const time = timingText(t);
  const parts = [time || (t.automatic ? "auto" : ""), t.condition ? `if ${t.condition}` : "", t.requires_approval ? "approval" : ""];
  return parts.filter(Boolean).join(" · ") || undefined;
}

/** A transition's accessible label: what a person must know about taking it. */
export function transitionLabel(t: MachineTransition): string {
  const time = timingText(t);
  const parts = [time ? `automatic ${time}` : t.automatic ? "automatic" : "requested"];
  if (t.condition) parts.push(`if ${t.condition}`);
  if (t.roles?.length) parts.push(`roles: ${t.roles.join(", ")}`);
  if (t.requires_approval) parts.push("needs approval");
  if (t.action) parts.push(`runs ${t.action.name}`);
  return parts.join(" · ");
}

export const STEP_TYPES: StepType[] = ["approval", "condition", "action", "wait", "notification", "external"];

/** A new step's starting config: the least each type needs to be valid (see core/validation.py). */
export function newStep(type: StepType, taken: Set<string>): Step {
  const base = type.charAt(0).toUpperCase() + type.slice(1);
  let name = base;
  for (let i = 2; taken.has(name); i++) name = `${base} ${i}`;
  const config: Record<StepType, Config> = {
    approval: {},
    condition: { expression: "" },
    action: { action: "execute_transfer" },
    wait: { duration_hours: 1 },
    notification: { channel: "webhook", url: "" },
    external: { url: "", method: "POST" },
  };
  return { type, name, config: config[type] };
}

export type Target = { kind: "goto"; step: number } | { kind: "complete" } | { kind: "fail" } | { kind: "bad" };

export function parseTarget(raw: Json | undefined, current: number, steps: Step[]): Target {
  if (typeof raw !== "string") return { kind: "bad" };
  const text = raw.trim();
  if (text === "continue") return current < steps.length ? { kind: "goto", step: current + 1 } : { kind: "complete" };
  if (text === "complete") return { kind: "complete" };
  if (text === "fail") return { kind: "fail" };
  if (text.startsWith("skip_to:")) {
    const ref = text.slice("skip_to:".length).trim();
    if (/^\d+$/.test(ref)) {
      const n = Number(ref);
      return n >= 1 && n <= steps.length ? { kind: "goto", step: n } : { kind: "bad" };
    }
    const i = steps.findIndex((s) => s.name === ref || s.id === ref);
    return i >= 0 ? { kind: "goto", step: i + 1 } : { kind: "bad" };
  }
  return { kind: "bad" };
}

export type Arrow = { from: string; to: string; label?: string; kind: "next" | "branch" | "reject" };

const nodeId = (t: Target): string | null =>
  t.kind === "goto" ? `s${t.step}` : t.kind === "complete" ? "done" : t.kind === "fail" ? "failed" : null;

/** Every arrow the engine can follow by design: next, condition branches (skip_to too), approval rejections. */
export function arrows(steps: Step[]): Arrow[] {
  const out: Arrow[] = steps.length ? [{ from: "start", to: "s1", kind: "next" }] : [];
  steps.forEach((step, i) => {
    const n = i + 1;
    const config = step.config ?? {};
    const add = (raw: Json | undefined, label: string | undefined, kind: Arrow["kind"]) => {
      const to = nodeId(parseTarget(raw, n, steps));
      if (to) out.push({ from: `s${n}`, to, label, kind });
    };
    if (step.type === "condition") {
      add(config.if_true ?? "continue", "true", "branch");
      add(config.if_false ?? "continue", "false", "branch");
    } else {
      add("continue", undefined, "next");
      if (step.type === "approval") add(config.on_reject ?? "fail", "rejected", "reject");
    }
  });
  return out;
}

/** Set a key, or remove it when the value is undefined (so an untouched document round-trips unchanged). */
export function withKey<T extends object>(obj: T, key: string, value: Json | undefined): T {
  const next = { ...obj } as Record<string, unknown>;
  if (value === undefined) delete next[key];
  else next[key] = value;
  return next as T;
}

export function move<T>(list: T[], from: number, to: number): T[] {
  if (to < 0 || to >= list.length) return list;
  const next = [...list];
  const [item] = next.splice(from, 1);
  if (item !== undefined) next.splice(to, 0, item);
  return next;
}

/** "/steps/2/config/approvers/value" -> the errors whose pointer is that path or below it. */
export function errorsAt(errors: { pointer: string; message: string }[], pointer: string, exact = false) {
  return errors.filter((e) => (exact ? e.pointer === pointer : e.pointer === pointer || e.pointer.startsWith(`${pointer}/`)));
}
