import { useState } from "react";
import { Link } from "wouter";
import { useOperate } from "../api/mutations";
import { usePipeline, useTemplates } from "../api/queries";
import { can, useSignedIn } from "../auth";
import { ErrorNote, LoadMore, relative, rows, Section, Status } from "../components/common";

const COLUMNS = ["IN_PROGRESS", "COMPLETED", "APPROVED", "REJECTED", "SKIPPED", "FAILED", "TIMED_OUT"];

/** PRD tab 3: one template's steps across its instances, and the failures to retry. */
export function Pipelines() {
  const me = useSignedIn();
  const templates = useTemplates();
  const [chosen, setChosen] = useState("");
  const id = chosen || rows(templates.data)[0]?.id;
  const pipeline = usePipeline(id);
  const p = pipeline.data;
  const extra = [...new Set((p?.steps ?? []).flatMap((s) => Object.keys(s.counts)))].filter((c) => !COLUMNS.includes(c));
  const columns = [...COLUMNS, ...extra];
  return (
    <>
      <h1>Pipelines</h1>
      <label>
        Template{" "}
        <select value={id ?? ""} onChange={(e) => setChosen(e.target.value)}>
          {rows(templates.data).map((t) => (
            <option key={t.id} value={t.id}>
              {t.name} ({t.id})
            </option>
          ))}
        </select>
      </label>
      <LoadMore list={templates} what="templates" />
      <ErrorNote error={pipeline.error} />
      {p && (
        <>
          <Section title="Steps across instances">
            <table className="list" aria-label="Steps across instances">
              <thead>
                <tr>
                  <th>Step</th>
                  <th>Executions</th>
                  {columns.map((c) => (
                    <th key={c}>{c.replace("_", " ").toLowerCase()}</th>
                  ))}
                  <th>Average</th>
                </tr>
              </thead>
              <tbody>
                {p.steps.length === 0 && (
                  <tr>
                    <td colSpan={columns.length + 3}>No instance of this template has run yet.</td>
                  </tr>
                )}
                {p.steps.map((s) => (
                  <tr key={s.step} data-testid="pipeline-step">
                    <td>
                      {s.step}. {s.name} <span className="muted">({s.type})</span>
                    </td>
                    <td>{s.executions}</td>
                    {columns.map((c) => (
                      <td key={c} className={c === "FAILED" || c === "TIMED_OUT" ? "error" : undefined}>
                        {s.counts[c] ?? ""}
                      </td>
                    ))}
                    <td>{s.avg_seconds === null ? "—" : `${s.avg_seconds.toFixed(1)} s`}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Section>
          <Section title="Failed and timed-out steps">
            <p className="muted">
              The latest 50 failed or timed-out steps.{" "}
              <Link href={`/instances?template_id=${encodeURIComponent(p.template_id)}&status=FAILED`}>Every failed instance of this template</Link> (all pages).
            </p>
            {p.failures.length === 0 ? (
              <p>None.</p>
            ) : (
              <table className="list" aria-label="Failed and timed-out steps">
                <thead>
                  <tr>
                    <th>Instance</th>
                    <th>Step</th>
                    <th>Error</th>
                    <th>When</th>
                    <th>Instance status</th>
                    <th>Retry</th>
                  </tr>
                </thead>
                <tbody>
                  {p.failures.map((f) => (
                    <tr key={`${f.instance_id}:${f.step}:${f.attempt}`} data-testid="failure-row">
                      <td>
                        <Link href={`/instances/${f.instance_id}`}>{f.instance_id}</Link>
                      </td>
                      <td>
                        {f.step}. {f.name} <span className="muted">attempt {f.attempt}</span> <Status value={f.status} />
                      </td>
                      <td>{f.error}</td>
                      <td>{relative(f.ended_at)}</td>
                      <td>
                        <Status value={f.instance_status} />
                      </td>
                      <td>{f.retryable && can(me, "operate") ? <RetryButton id={f.instance_id} step={f.step} /> : null}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </Section>
        </>
      )}
    </>
  );
}

function RetryButton({ id, step }: { id: string; step: number }) {
  const operate = useOperate();
  const [open, setOpen] = useState(false);
  if (!open)
    return (
      <button type="button" onClick={() => setOpen(true)}>
        Retry step {step}
      </button>
    );
  return (
    <span className="row">
      <button type="button" disabled={operate.isPending} onClick={() => operate.mutate({ id, op: "retry", step, reason: "" })}>
        Confirm retry
      </button>
      <button type="button" onClick={() => setOpen(false)}>
        Back
      </button>
      <ErrorNote error={operate.error} />
    </span>
  );
}
