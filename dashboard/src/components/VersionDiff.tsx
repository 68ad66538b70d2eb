// Two versions of a template side by side, line by line (jsdiff), changed lines marked.
import { diffLines } from "diff";
import { useState } from "react";
import { useTemplate } from "../api/queries";

type Row = { left?: string; right?: string; kind: "same" | "removed" | "added" };

export function rows(a: string, b: string): Row[] {
  const out: Row[] = [];
  for (const part of diffLines(a, b)) {
    const lines = part.value.replace(/\n$/, "").split("\n");
    for (const line of lines) {
      if (part.added) out.push({ right: line, kind: "added" });
      else if (part.removed) out.push({ left: line, kind: "removed" });
      else out.push({ left: line, right: line, kind: "same" });
    }
  }
  return out;
}

export function VersionDiff({ id, versions, current }: { id: string; versions: number[]; current: number }) {
  const [other, setOther] = useState(versions.find((v) => v !== current) ?? current);
  const left = useTemplate(id, other);
  const right = useTemplate(id, current);
  const text = (d: unknown) => JSON.stringify(d ?? {}, null, 2);
  const table = left.data && right.data ? rows(text(left.data.document), text(right.data.document)) : [];
  const changed = table.filter((r) => r.kind !== "same").length;
  return (
    <section aria-label="Compare versions">
      <h2>Compare versions</h2>
      <label>
        Compare v{current} with{" "}
        <select value={other} onChange={(e) => setOther(Number(e.target.value))}>
          {versions.map((v) => (
            <option key={v} value={v}>
              v{v}
            </option>
          ))}
        </select>
      </label>{" "}
      <span className="muted" data-testid="diff-summary">
        {changed} changed line(s)
      </span>
      <table className="diff" aria-label={`v${other} and v${current}`}>
        <thead>
          <tr>
            <th>v{other}</th>
            <th>v{current}</th>
          </tr>
        </thead>
        <tbody>
          {table.map((r, i) => (
            <tr key={i} className={r.kind}>
              <td>{r.left ?? ""}</td>
              <td>{r.right ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
