import { Link } from "wouter";
import { useTemplate, useTemplates } from "../api/queries";
import { can, useSignedIn } from "../auth";
import { mayStart } from "./Start";
import { ErrorNote, LoadMore, relative, rows, Status } from "../components/common";

export function Templates() {
  const me = useSignedIn();
  const list = useTemplates();
  return (
    <>
      <h1>Templates</h1>
      {can(me, "templates:write") && (
        <p>
          <Link href="/templates/new" className="button">
            New template
          </Link>
        </p>
      )}
      <ErrorNote error={list.error} />
      <table className="list">
        <thead>
          <tr>
            <th>Name</th>
            <th>Trigger</th>
            <th>Status</th>
            <th>Current version</th>
            <th>Open a version</th>
            <th>Updated</th>
            <th>Start</th>
          </tr>
        </thead>
        <tbody>
          {rows(list.data).map((t) => (
            <tr key={t.id} data-testid="template-row" data-template={t.id}>
              <td>
                <Link href={`/templates/${t.id}/${t.version}`}>{t.name}</Link>
                <div className="muted">{t.id}</div>
              </td>
              <td>{t.trigger_type}</td>
              <td>
                <Status value={t.status} />
              </td>
              <td>v{t.version}</td>
              <td>
                <Versions id={t.id} current={t.version} />
              </td>
              <td>{relative(t.updated_at)}</td>
              <td>
                {t.status === "ACTIVE" && mayStart(me, t.id) ? (
                  <Link href={`/templates/${t.id}/start`} className="button">
                    Start
                  </Link>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <LoadMore list={list} what="templates" />
    </>
  );
}

function Versions({ id, current }: { id: string; current: number }) {
  const detail = useTemplate(id);
  const versions = detail.data?.versions ?? [current];
  return (
    <span className="row">
      {versions.map((v) => (
        <Link key={v} href={`/templates/${id}/${v}`} aria-label={`Open v${v} of ${id}`}>
          v{v}
        </Link>
      ))}
    </span>
  );
}
