// "Start" on a template: the manual trigger (POST /v1/workflows/instances) with the trigger fields the
// template reads, one idempotency key per form (shown, so a retried click starts nothing new), then the
// new instance's page. Only offered to whom the server would let start it (mayStart).
import { useMutation } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useLocation } from "wouter";
import { api, idempotencyKey, must, type Schemas } from "../api/client";
import { useTemplate } from "../api/queries";
import { can, refusal, useSignedIn, type Me } from "../auth";
import type { Json } from "../builder/model";
import { ErrorNote, Status } from "../components/common";

/** Whether the server would accept this principal's manual start (gateway/instances.py trigger). */
export function mayStart(me: Me, templateId: string): boolean {
  return can(me, "trigger") && (me.can_initiate == null || me.can_initiate.includes(templateId));
}

/** The trigger fields a template reads: every `trigger.<path>` in its expressions and placeholders. */
export function triggerFields(document: unknown): string[] {
  const found = new Set<string>();
  for (const m of JSON.stringify(document ?? {}).matchAll(/\btrigger\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)/g)) if (m[1]) found.add(m[1]);
  const paths = [...found].sort();
  return paths.filter((p) => !paths.some((q) => q.startsWith(`${p}.`))); // "metadata.po", not also "metadata"
}

/** A typed value: numbers and true/false are sent as such (expressions compare them), the rest as text. */
export function typed(text: string): Json {
  const t = text.trim();
  if (/^-?\d+(\.\d+)?$/.test(t)) return Number(t);
  if (t === "true" || t === "false") return t === "true";
  return text;
}

/** The trigger_data object from rows of dotted paths ("metadata.po") and their values. */
export function triggerData(rows: [string, string][]): { [key: string]: Json } {
  const out: { [key: string]: Json } = {};
  for (const [path, value] of rows) {
    if (!path.trim() || value === "") continue;
    const parts = path.trim().split(".");
    let at = out;
    parts.slice(0, -1).forEach((p) => {
      const next = at[p];
      if (typeof next !== "object" || next === null || Array.isArray(next)) at[p] = {};
      at = at[p] as { [key: string]: Json };
    });
    at[parts[parts.length - 1] ?? ""] = typed(value);
  }
  return out;
}

export function StartInstance({ id }: { id: string }) {
  const me = useSignedIn();
  const template = useTemplate(id);
  if (!template.data) return template.error ? <ErrorNote error={template.error} /> : <p role="status">Loading…</p>;
  const t = template.data;
  return (
    <>
      <h1>
        Start {t.name} <span className="muted">v{t.version}</span> <Status value={t.status} />
      </h1>
      {!mayStart(me, id) ? (
        <p className="note">{refusal(me, `start ${t.name}`)}.</p>
      ) : t.status !== "ACTIVE" ? (
        <p className="note">Only ACTIVE templates start instances; activate it in the builder first.</p>
      ) : (
        <StartForm id={id} fields={triggerFields(t.document)} />
      )}
      <p>
        <Link href="/templates">All templates</Link>
      </p>
    </>
  );
}

function StartForm({ id, fields }: { id: string; fields: string[] }) {
  const [rows, setRows] = useState<[string, string][]>(() => fields.map((f) => [f, ""]));
  const [key] = useState(idempotencyKey);
  const [, navigate] = useLocation();
  const start = useMutation({
    mutationFn: () =>
      must(
        api.POST("/v1/workflows/instances", {
          params: { query: { wait: true }, header: { "Idempotency-Key": key } },
          body: { template_id: id, trigger_data: triggerData(rows) as Schemas["TriggerInput"]["trigger_data"] },
        }),
      ),
    onSuccess: (started) => navigate(`/instances/${"instance_id" in started ? started.instance_id : started.id}`),
  });
  const set = (i: number, at: 0 | 1, v: string) => setRows((r) => r.map((x, j) => (j === i ? ((at === 0 ? [v, x[1]] : [x[0], v]) as [string, string]) : x)));
  return (
    <form
      className="start-form"
      aria-label="Manual trigger"
      onSubmit={(e) => {
        e.preventDefault();
        start.mutate();
      }}
    >
      <p className="muted">
        The fields the template reads (<code>trigger.*</code>); numbers and true/false are sent as such. Empty fields are left out.
      </p>
      <fieldset>
        <legend>Trigger data</legend>
        {rows.map(([name, value], i) =>
          i < fields.length ? (
            <div className="field" key={i}>
              <label htmlFor={`trigger-${i}`}>{name}</label>
              <input id={`trigger-${i}`} value={value} onChange={(e) => set(i, 1, e.target.value)} />
            </div>
          ) : (
            <div className="row" key={i}>
              <input aria-label={`Extra field ${i + 1 - fields.length} name`} value={name} placeholder="field or a.b" onChange={(e) => set(i, 0, e.target.value)} />
              <input aria-label={`Extra field ${i + 1 - fields.length} value`} value={value} onChange={(e) => set(i, 1, e.target.value)} />
              <button type="button" aria-label={`Remove extra field ${i + 1 - fields.length}`} onClick={() => setRows((r) => r.filter((_, j) => j !== i))}>
                ✕
              </button>
            </div>
          ),
        )}
        <button type="button" onClick={() => setRows((r) => [...r, ["", ""]])}>
          Add field
        </button>
      </fieldset>
      <div className="field">
        <label htmlFor="idempotency-key">Idempotency key (a repeated click with it starts nothing new)</label>
        <input id="idempotency-key" readOnly value={key} />
      </div>
      <ErrorNote error={start.error} />
      <button type="submit" disabled={start.isPending}>
        {start.isPending ? "Starting…" : "Start workflow"}
      </button>
    </form>
  );
}
