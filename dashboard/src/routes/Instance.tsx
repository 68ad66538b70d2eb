import { useState } from "react";
import { Link } from "wouter";
import { ApiError } from "../api/client";
import { useOperate, type Operation } from "../api/mutations";
import { useActions, useInstance, useTemplate } from "../api/queries";
import { isMachine, type Step, type TemplateDoc } from "../builder/model";
import { ErrorNote, Json, relative, Section, Status, when } from "../components/common";
import { FlowGraph } from "../components/FlowGraph";
import { MachineGraph } from "../components/MachineGraph";
import { blockingText } from "./Instances";
import { can, useSignedIn } from "../auth";

const OPERATIONS: Operation[] = ["pause", "resume", "cancel", "retry", "escalate", "advance"];

export function InstancePage({ id }: { id: string }) {
  const me = useSignedIn();
  const instance = useInstance(id);
  const data = instance.data;
  const template = useTemplate(data?.template_id, data?.template_version);
  const actions = useActions(id, data ? `${data.status}:${data.last_seq}` : undefined);
  if (instance.error instanceof ApiError && instance.error.status === 404) {
    return (
      <>
        <h1>Instance not found</h1>
        <p role="alert">There is no instance {id} in your tenant.</p>
      </>
    );
  }
  if (!data) return instance.error ? <ErrorNote error={instance.error} /> : <p role="status">Loading…</p>;
  const document = template.data?.document as TemplateDoc | undefined;
  const steps = (document?.steps ?? []) as Step[];
  const path = data.timeline.filter((t) => t.event_type === "StepStarted" && t.step).map((t) => t.step as number);
  if (data.status === "COMPLETED") path.push(0);
  const allowed = (actions.data?.actions ?? []).filter((a) => OPERATIONS.includes(a.action as Operation));
  // Escalation is not among the listed actions (agent-actions); the engine accepts it from the step's
  // approvers or a workflow_admin, so it is offered to whoever may decide while an approval waits.
  const waiting = (data.blocking as { waiting_for?: string | null }).waiting_for;
  if (data.status === "ACTIVE" && waiting === "approval" && data.current_step && can(me, "decide")) {
    allowed.push({ action: "escalate", method: "POST", href: "", step: data.current_step, description: `escalate step ${data.current_step} to the template's escalation target` });
  }
  return (
    <>
      <h1>
        {data.template_name} <span className="muted">v{data.template_version}</span> <Status value={data.status} />
      </h1>
      <p className="muted">
        {data.id} · started {relative(data.created_at)} by {data.initiated_by.kind} {data.initiated_by.id} · {data.source}
      </p>
      <p data-testid="blocking">
        {data.completed_at
          ? `${data.status.charAt(0)}${data.status.slice(1).toLowerCase()} ${relative(data.completed_at)}`
          : `${data.current_step ? `Step ${data.current_step} (${data.current_step_name ?? ""}): ` : ""}${blockingText(data.blocking)}`}
        {data.failure_reason ? ` · reason: ${data.failure_reason}` : ""}
      </p>
      <Section title="Actions">
        {allowed.length === 0 ? (
          <p className="muted">No action is open to you now.</p>
        ) : (
          <div className="row">
            {allowed.map((a) => (
              <ActionButton key={`${a.action}:${a.step ?? ""}`} id={id} op={a.action as Operation} step={a.step} description={a.description} />
            ))}
          </div>
        )}
      </Section>
      <div className="split">
        <Section title="Graph">
          {document && isMachine(document) ? (
            <MachineGraph states={document.states ?? []} transitions={document.transitions ?? []} current={data.machine_state ?? null} mark="current" label="Instance path" />
          ) : steps.length ? <FlowGraph steps={steps} current={data.status === "COMPLETED" ? null : data.current_step} path={path} label="Instance path" /> : <p>Loading the template…</p>}
        </Section>
        <Section title="Steps">
          <ul className="steps">
            {data.steps.map((s) => (
              <li key={`${s.step}:${s.attempt}`}>
                <strong>
                  {s.step}. {s.name}
                </strong>{" "}
                <span className="muted">{s.type}, attempt {s.attempt}</span> <Status value={s.status} />
                {s.error && <div className="error">{s.error}</div>}
                {s.approved_by.length > 0 && <div>approved by {s.approved_by.join(", ")}</div>}
                <details>
                  <summary>Input, output and external calls</summary>
                  <Json value={{ output: s.output, external_request: s.external_request, external_response: s.external_response, votes: s.votes }} />
                </details>
              </li>
            ))}
          </ul>
        </Section>
      </div>
      <Section title="Audit trail">
        <table className="list" aria-label="Audit trail">
          <thead>
            <tr>
              <th>#</th>
              <th>When</th>
              <th>Event</th>
              <th>Step</th>
              <th>Who</th>
              <th>Reasoning</th>
              <th>Signature</th>
            </tr>
          </thead>
          <tbody>
            {data.timeline.map((t) => {
              const details = t.details as Record<string, unknown>;
              return (
                <tr key={t.seq} data-testid="audit-row">
                  <td>{t.seq}</td>
                  <td>{when(t.at)}</td>
                  <td>{t.event_type}</td>
                  <td>{t.step ?? ""}</td>
                  <td>
                    {t.actor.id} <span className="muted">({t.actor.kind})</span>
                  </td>
                  <td>{t.reasoning}</td>
                  <td>{details.signature ? (details.signature_verified === true ? "verified" : "unverified") : ""}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </Section>
      <p>
        <Link href="/instances">Back to active workflows</Link>
      </p>
    </>
  );
}

function ActionButton({ id, op, step, description }: { id: string; op: Operation; step?: number; description: string }) {
  const operate = useOperate();
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState("");
  if (!open) {
    return (
      <button type="button" className={op === "cancel" ? "danger" : undefined} onClick={() => setOpen(true)} title={description}>
        {op.charAt(0).toUpperCase() + op.slice(1)}
      </button>
    );
  }
  return (
    <form
      className="confirm"
      aria-label={`Confirm ${op}`}
      onSubmit={(e) => {
        e.preventDefault();
        operate.mutate({ id, op, step, reason }, { onSuccess: () => setOpen(false) });
      }}
    >
      <p>{description}. Are you sure?</p>
      {(op === "pause" || op === "cancel" || op === "escalate") && (
        <label>
          Reason
          <input value={reason} onChange={(e) => setReason(e.target.value)} />
        </label>
      )}
      {op === "escalate" && <p className="muted">It goes to the template's escalation target (escalate_to or on_timeout.approvers).</p>}
      <div className="row">
        <button type="submit" disabled={operate.isPending} className={op === "cancel" ? "danger" : undefined}>
          Confirm {op}
        </button>
        <button type="button" onClick={() => setOpen(false)}>
          Back
        </button>
      </div>
      <ErrorNote error={operate.error} />
    </form>
  );
}
