import { useState } from "react";
import { useAccessLog, useAgents, useSecurityLog } from "../api/queries";
import { can, refusal, useSignedIn } from "../auth";
import { ErrorNote, LoadMore, relative, rows, Section, when } from "../components/common";

/** Admins' view of what the API records about misuse: the tenant's security log (its principals' refused
 * commands against other tenants' instances, kept out of those instances' trails) and each agent's access log
 * (every call an agent made, reads included). Both were API-only before. */
export function Security() {
  const me = useSignedIn();
  return (
    <>
      <h1>Security</h1>
      {can(me, "audit:read") ? <SecurityLog /> : <p className="muted">{refusal(me, "read the security log")}</p>}
      {can(me, "agents:write") ? <AgentAccess /> : <p className="muted">{refusal(me, "read agents' access logs")}</p>}
    </>
  );
}

function SecurityLog() {
  const log = useSecurityLog();
  const items = rows(log.data);
  return (
    <Section title="Security log">
      <p className="muted">Commands your tenant's principals sent against other tenants' instances. The engine refused each one.</p>
      <ErrorNote error={log.error} />
      <table className="list" aria-label="Security log">
        <thead>
          <tr>
            <th>When</th>
            <th>Who</th>
            <th>Command</th>
            <th>Instance</th>
            <th>Why refused</th>
          </tr>
        </thead>
        <tbody>
          {log.isSuccess && items.length === 0 && (
            <tr>
              <td colSpan={5}>Nothing recorded: no principal of this tenant has tried another tenant's instance.</td>
            </tr>
          )}
          {items.map((i) => (
            <tr key={i.command_id ?? `${i.at}-${i.instance_id}`} data-testid="security-entry">
              <td title={when(i.at)}>{relative(i.at)}</td>
              <td>{i.actor_id}</td>
              <td>{i.command_type}</td>
              <td>
                <code>{i.instance_id}</code>
              </td>
              <td>{i.reason}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <LoadMore list={log} what="entries" />
    </Section>
  );
}

function AgentAccess() {
  const agents = useAgents();
  const [chosen, setChosen] = useState("");
  const agentId = chosen || rows(agents.data)[0]?.id;
  const log = useAccessLog(agentId);
  const items = rows(log.data);
  return (
    <Section title="Agent access log">
      <ErrorNote error={agents.error} />
      {agents.isSuccess && rows(agents.data).length === 0 ? (
        <p>This tenant has no agents.</p>
      ) : (
        <>
          <label>
            Agent{" "}
            <select value={agentId ?? ""} onChange={(e) => setChosen(e.target.value)}>
              {rows(agents.data).map((a) => (
                <option key={a.id} value={a.id}>
                  {a.display_name || a.id} ({a.id}){a.has_public_key ? "" : " · no signing key"}
                </option>
              ))}
            </select>
          </label>
          <LoadMore list={agents} what="agents" />
          <ErrorNote error={log.error} />
          <table className="list" aria-label="Agent access log">
            <thead>
              <tr>
                <th>When</th>
                <th>Call</th>
                <th>Status</th>
                <th>Conversation</th>
                <th>Client</th>
              </tr>
            </thead>
            <tbody>
              {log.isSuccess && items.length === 0 && (
                <tr>
                  <td colSpan={5}>This agent has made no API call yet.</td>
                </tr>
              )}
              {items.map((i, n) => (
                <tr key={`${i.at}-${n}`} data-testid="access-entry">
                  <td title={when(i.at)}>{relative(i.at)}</td>
                  <td>
                    {i.method} <code>{i.path}</code> <span className="muted">({i.operation})</span>
                  </td>
                  <td>{i.status}</td>
                  <td>{i.conversation_id ?? ""}</td>
                  <td>{i.client ?? ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <LoadMore list={log} what="calls" />
        </>
      )}
    </Section>
  );
}
