import { useState } from "react";
import { Link, useSearch } from "wouter";
import type { Schemas } from "../api/client";
import { POLL_MS, useInstances, useTemplates, type InstanceFilters } from "../api/queries";
import { ErrorNote, LoadMore, relative, rows, Status } from "../components/common";

type Instance = Schemas["Instance"];
const STATUSES = ["ACTIVE", "PAUSED", "COMPLETED", "CANCELLED", "FAILED"] as const;

/** Search by instance id, transfer id or any trigger value (within the page the filters returned). */
export function matches(i: Instance, search: string): boolean {
  const q = search.trim().toLowerCase();
  if (!q) return true;
  return [i.id, i.template_name, JSON.stringify(i.trigger ?? {})].some((s) => s.toLowerCase().includes(q));
}

/** Filters a link may preset (`/instances?template_id=…&status=FAILED`, from Pipelines). */
export function filtersFrom(search: string): InstanceFilters {
  const q = new URLSearchParams(search);
  const status = q.get("status");
  const template = q.get("template_id");
  return {
    ...(status && (STATUSES as readonly string[]).includes(status) ? { status: status as Instance["status"] } : {}),
    ...(template ? { template_id: template } : {}),
  };
}

export function Instances() {
  const search0 = useSearch();
  const [filters, setFilters] = useState<InstanceFilters>(() => filtersFrom(search0));
  const [search, setSearch] = useState("");
  const list = useInstances(filters);
  const templates = useTemplates();
  const set = <K extends keyof InstanceFilters>(key: K, value: InstanceFilters[K] | "") =>
    setFilters((f) => {
      const next = { ...f };
      if (value === "" || value === undefined) delete next[key];
      else next[key] = value;
      return next;
    });
  const items = rows(list.data).filter((i) => matches(i, search));
  return (
    <>
      <h1>Active workflows</h1>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          Status
          <select value={filters.status ?? ""} onChange={(e) => set("status", e.target.value as Instance["status"] | "")}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Template
          <select value={filters.template_id ?? ""} onChange={(e) => set("template_id", e.target.value)}>
            <option value="">any</option>
            {rows(templates.data).map((t) => (
              <option key={t.id} value={t.id}>
                {t.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Started after
          <input type="date" value={filters.created_after?.slice(0, 10) ?? ""} onChange={(e) => set("created_after", e.target.value ? `${e.target.value}T00:00:00Z` : "")} />
        </label>
        <label className="check">
          <input type="checkbox" checked={filters.blocked_on === "me"} onChange={(e) => set("blocked_on", e.target.checked ? "me" : "")} />
          Blocked on me
        </label>
        <label>
          Search
          <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="instance, transfer, trigger field" />
        </label>
      </form>
      <ErrorNote error={list.error} />
      <p className="muted">
        {items.length} shown{list.dataUpdatedAt ? ` · refreshed ${new Date(list.dataUpdatedAt).toLocaleTimeString()} (every ${POLL_MS / 1000} s)` : ""}
      </p>
      <table className="list">
        <thead>
          <tr>
            <th>Instance</th>
            <th>Template</th>
            <th>Status</th>
            <th>Current step</th>
            <th>Blocking</th>
            <th>Started</th>
          </tr>
        </thead>
        <tbody>
          {items.length === 0 && !list.isLoading && (
            <tr>
              <td colSpan={6}>No workflow matches these filters.</td>
            </tr>
          )}
          {items.map((i) => (
            <tr key={i.id} data-testid="instance-row" data-instance={i.id}>
              <td>
                <Link href={`/instances/${i.id}`}>{i.id}</Link>
              </td>
              <td>
                {i.template_name} <span className="muted">v{i.template_version}</span>
              </td>
              <td>
                <Status value={i.status} />
              </td>
              <td>{i.current_step ? `${i.current_step}. ${i.current_step_name ?? ""}` : "—"}</td>
              <td>
                {blockingText(i.blocking)}
                {i.blocking.waiting_for ? <div className="muted">since {relative(i.updated_at)}</div> : null}
              </td>
              <td>{relative(i.created_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <LoadMore list={list} what="workflows" />
    </>
  );
}

export function blockingText(b: Instance["blocking"]): string {
  const blocking = b as Record<string, unknown>;
  const waiting = blocking.waiting_for;
  if (!waiting) return "—";
  const approvers = blocking.approvers as { type?: string; value?: unknown } | undefined;
  const who = approvers?.value ? ` (${approvers.type} ${String(approvers.value)})` : "";
  const timer = blocking.next_timer as { fire_at?: number } | undefined;
  const deadline = timer?.fire_at ? `, next deadline ${relative(new Date(timer.fire_at).toISOString())}` : "";
  return `${String(waiting)}${who}${deadline}`;
}
