import { useQueries } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "wouter";
import { api, must, type Schemas } from "../api/client";
import { useDecide, type Decision } from "../api/mutations";
import { keys, useMyDecisions, usePending } from "../api/queries";
import { can, refusal, useSignedIn } from "../auth";
import { ErrorNote, LoadMore, money, relative, rows, Section, Status, when } from "../components/common";

type Pending = Schemas["PendingApproval"];

/** Soonest deadline first; approvals without a deadline last, oldest request first among them. */
export function byDeadline(a: Pending, b: Pending): number {
  const da = a.deadline ? Date.parse(a.deadline) : Infinity;
  const db = b.deadline ? Date.parse(b.deadline) : Infinity;
  return da - db || Date.parse(a.requested_at) - Date.parse(b.requested_at);
}

export function Approvals() {
  const me = useSignedIn();
  const pending = usePending();
  const items = rows(pending.data).sort(byDeadline);
  const details = useQueries({
    queries: items.map((p) => ({
      queryKey: keys.instance(p.instance_id),
      queryFn: () => must(api.GET("/v1/workflows/instances/{id}", { params: { path: { id: p.instance_id } } })),
      staleTime: 10_000,
    })),
  });
  const mayDecide = can(me, "decide");
  return (
    <>
      <h1>My approvals</h1>
      {!mayDecide && <p className="note" data-testid="readonly-note">{refusal(me, "approve or reject")}: decisions are hidden.</p>}
      <ErrorNote error={pending.error} />
      <Section title="Pending">
        {pending.isLoading ? (
          <p role="status">Loading…</p>
        ) : items.length === 0 ? (
          <p>Nothing waits for you.</p>
        ) : (
          <table className="list">
            <thead>
              <tr>
                <th>Deadline</th>
                <th>Workflow</th>
                <th>Step</th>
                <th>Amount</th>
                <th>Trigger</th>
                <th>Quorum</th>
                {mayDecide && <th>Decision</th>}
              </tr>
            </thead>
            <tbody>
              {items.map((p, i) => (
                <PendingRow key={`${p.instance_id}:${p.step}:${p.attempt}`} p={p} detail={details[i]?.data} mayDecide={mayDecide} />
              ))}
            </tbody>
          </table>
        )}
        <LoadMore list={pending} what="approvals" />
      </Section>
      {mayDecide && <History />}
    </>
  );
}

function History() {
  const decisions = useMyDecisions();
  const items = decisions.data?.items ?? [];
  return (
    <Section title="My decisions">
      <ErrorNote error={decisions.error} />
      {items.length === 0 ? (
        <p>You have not decided anything yet.</p>
      ) : (
        <table className="list" aria-label="My decisions">
          <thead>
            <tr>
              <th>When</th>
              <th>Workflow</th>
              <th>Step</th>
              <th>Decision</th>
              <th>Reason</th>
              <th>Now</th>
            </tr>
          </thead>
          <tbody>
            {items.map((d) => (
              <tr key={`${d.instance_id}:${d.step}:${d.at}`} data-testid="decision-row">
                <td>{relative(d.at)}</td>
                <td>
                  <Link href={`/instances/${d.instance_id}`}>{d.template_name}</Link>
                </td>
                <td>
                  {d.step}. {d.step_name}
                </td>
                <td>{d.decision === "approve" ? "approved" : d.decision === "reject" ? "rejected" : d.decision}</td>
                <td>{d.reasoning}</td>
                <td>
                  <Status value={d.instance_status} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}

const KEY_FIELDS = ["transfer_id", "id", "currency", "source_account", "destination_account", "event_type"];

function PendingRow({ p, detail, mayDecide }: { p: Pending; detail?: Schemas["InstanceDetail"]; mayDecide: boolean }) {
  const decide = useDecide();
  const [open, setOpen] = useState<Decision | null>(null);
  const [reason, setReason] = useState("");
  const trigger = (detail?.trigger ?? {}) as Record<string, unknown>;
  const fields = KEY_FIELDS.filter((k) => trigger[k] !== undefined && trigger[k] !== null);
  const label = `${detail?.template_name ?? p.template_id} · ${p.step_name}`;
  return (
    <tr data-testid="pending-row" aria-label={label}>
      <td title={when(p.deadline)}>{p.deadline ? relative(p.deadline) : "none"}</td>
      <td>
        <Link href={`/instances/${p.instance_id}`}>{detail?.template_name ?? p.template_id}</Link>
        <div className="muted">{p.instance_id}</div>
      </td>
      <td>
        {p.step}. {p.step_name} {p.kind === "review" && <span className="tag">review</span>}
      </td>
      <td>{money(p.amount, trigger.currency)}</td>
      <td>
        {fields.map((k) => (
          <div key={k}>
            <span className="muted">{k}</span> {String(trigger[k])}
          </div>
        ))}
      </td>
      <td>
        <progress max={p.required} value={p.approvals} aria-label="quorum progress" /> {p.approvals} of {p.required}
      </td>
      {mayDecide && (
        <td>
          {open === null ? (
            <div className="row">
              <button type="button" onClick={() => setOpen("approve")}>
                Approve
              </button>
              <button type="button" className="danger" onClick={() => setOpen("reject")}>
                Reject
              </button>
            </div>
          ) : (
            <form
              className="decide"
              onSubmit={(e) => {
                e.preventDefault();
                decide.mutate({ id: p.instance_id, step: p.step, decision: open, reasoning: reason });
              }}
            >
              <label>
                Reason for {open === "approve" ? "approval" : "rejection"}
                <textarea value={reason} onChange={(e) => setReason(e.target.value)} rows={2} required={open === "reject"} />
              </label>
              <div className="row">
                <button type="submit" disabled={decide.isPending} className={open === "reject" ? "danger" : undefined}>
                  Confirm {open}
                </button>
                <button type="button" onClick={() => setOpen(null)}>
                  Back
                </button>
              </div>
              <ErrorNote error={decide.error} />
            </form>
          )}
        </td>
      )}
    </tr>
  );
}
