import { useState } from "react";
import { Bar, BarChart, CartesianGrid, Cell, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { useAnalytics, useTemplates, useThroughput } from "../api/queries";
import { ErrorNote, rows, Section } from "../components/common";

const COLORS: Record<string, string> = { ACTIVE: "#2563eb", PAUSED: "#a16207", COMPLETED: "#15803d", CANCELLED: "#6b7280", FAILED: "#b42318" };
const secs = (v: number | null | undefined) => (v === null || v === undefined ? "—" : v < 120 ? `${v.toFixed(1)} s` : `${(v / 60).toFixed(1)} min`);

export function Analytics() {
  const [templateId, setTemplateId] = useState("");
  const templates = useTemplates();
  const analytics = useAnalytics(templateId || undefined);
  const [bucket, setBucket] = useState<"hour" | "day">("day");
  const throughput = useThroughput(templateId || undefined, bucket);
  const series = (throughput.data?.series ?? []).map((b) => ({
    ...b,
    label: bucket === "hour" ? new Date(b.at).toLocaleString(undefined, { day: "numeric", hour: "2-digit" }) : new Date(b.at).toLocaleDateString(),
  }));
  const a = analytics.data;
  const counts = Object.entries(a?.counts_by_status ?? {}).map(([status, count]) => ({ status, count }));
  const total = counts.reduce((n, c) => n + c.count, 0);
  const rate = (s: string) => (total ? `${Math.round(((a?.counts_by_status[s] ?? 0) / total) * 100)} %` : "—");
  return (
    <>
      <h1>Analytics</h1>
      <label>
        Template{" "}
        <select value={templateId} onChange={(e) => setTemplateId(e.target.value)}>
          <option value="">all templates</option>
          {rows(templates.data).map((t) => (
            <option key={t.id} value={t.id}>
              {t.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        {" "}Period{" "}
        <select value={bucket} onChange={(e) => setBucket(e.target.value as "hour" | "day")}>
          <option value="day">last 30 days, per day</option>
          <option value="hour">last 48 hours, per hour</option>
        </select>
      </label>
      <ErrorNote error={analytics.error ?? throughput.error} />
      {a && (
        <>
          <div className="cards">
            <div className="card">
              <div className="muted">Instances</div>
              <strong>{total}</strong>
            </div>
            <div className="card">
              <div className="muted">Completion rate</div>
              <strong>{rate("COMPLETED")}</strong>
            </div>
            <div className="card">
              <div className="muted">Failure rate</div>
              <strong>{rate("FAILED")}</strong>
            </div>
            <div className="card">
              <div className="muted">Completion time p50 / p90 / p99</div>
              <strong>
                {secs(a.completion_time_seconds.p50)} / {secs(a.completion_time_seconds.p90)} / {secs(a.completion_time_seconds.p99)}
              </strong>
            </div>
            <div className="card">
              <div className="muted">Approval latency p50 / p90 / p99 ({a.approval_latency_seconds.count})</div>
              <strong>
                {secs(a.approval_latency_seconds.p50)} / {secs(a.approval_latency_seconds.p90)} / {secs(a.approval_latency_seconds.p99)}
              </strong>
            </div>
          </div>
          <div className="split">
            <Section title="Instances by status">
              <ResponsiveContainer width="100%" height={220}>
                <BarChart data={counts}>
                  <CartesianGrid strokeDasharray="3 3" />
                  <XAxis dataKey="status" />
                  <YAxis allowDecimals={false} />
                  <Tooltip />
                  <Bar isAnimationActive={false} dataKey="count">
                    {counts.map((c) => (
                      <Cell key={c.status} fill={COLORS[c.status] ?? "#64748b"} />
                    ))}
                  </Bar>
                </BarChart>
              </ResponsiveContainer>
            </Section>
            <Section title="Slowest steps (average seconds)">
              <ResponsiveContainer width="100%" height={220}>
                <BarChart data={a.slowest_steps.map((s) => ({ name: `${s.step}. ${s.name}`, seconds: s.avg_seconds ?? 0 }))} layout="vertical">
                  <CartesianGrid strokeDasharray="3 3" />
                  <XAxis type="number" />
                  <YAxis type="category" dataKey="name" width={160} />
                  <Tooltip />
                  <Bar isAnimationActive={false} dataKey="seconds" fill="#7c3aed" />
                </BarChart>
              </ResponsiveContainer>
            </Section>
          </div>
          <div className="split">
            <Section title="Throughput">
              <ResponsiveContainer width="100%" height={220}>
                <BarChart data={series}>
                  <CartesianGrid strokeDasharray="3 3" />
                  <XAxis dataKey="label" />
                  <YAxis allowDecimals={false} />
                  <Tooltip />
                  <Legend />
                  <Bar isAnimationActive={false} dataKey="started" fill="#2563eb" />
                  <Bar isAnimationActive={false} dataKey="completed" fill="#15803d" />
                  <Bar isAnimationActive={false} dataKey="failed" fill="#b42318" />
                </BarChart>
              </ResponsiveContainer>
            </Section>
            <Section title="Busiest approvers">
              <table className="list" aria-label="Busiest approvers">
                <thead>
                  <tr>
                    <th>Approver</th>
                    <th>Decisions</th>
                    <th>Median time to decide</th>
                  </tr>
                </thead>
                <tbody>
                  {throughput.data?.busiest_approvers.length === 0 && (
                    <tr>
                      <td colSpan={3}>No approval decided in this period.</td>
                    </tr>
                  )}
                  {(throughput.data?.busiest_approvers ?? []).map((a) => (
                    <tr key={a.approver}>
                      <td>{a.approver}</td>
                      <td>{a.decisions}</td>
                      <td>{secs(a.p50_seconds)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </Section>
          </div>
          <Section title="Busiest steps">
            <table className="list">
              <thead>
                <tr>
                  <th>Template</th>
                  <th>Step</th>
                  <th>Executions</th>
                  <th>Average</th>
                </tr>
              </thead>
              <tbody>
                {a.busiest_steps.map((s) => (
                  <tr key={`${s.template_id}:${s.step}`}>
                    <td>{s.template_id}</td>
                    <td>
                      {s.step}. {s.name}
                    </td>
                    <td>{s.executions}</td>
                    <td>{secs(s.avg_seconds)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Section>
        </>
      )}
    </>
  );
}
