import type { Field } from "./fields";
import type { Json, Step } from "./model";
import { JsonBox, SchemaEditor, type Schema } from "./SchemaEditor";

type Props = {
  field: Field;
  pointer: string;
  value: Json | undefined;
  onChange: (value: Json | undefined) => void;
  steps: Step[];
  current: number;
  errors: { pointer: string; message: string }[];
  /** The key's JSON Schema (GET /v1/workflows/step-types): nested values get forms drawn from it. */
  schema?: Schema;
};

const isPlainApprover = (v: Json | undefined): v is { type: string; value: string } =>
  typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).every((k) => k === "type" || k === "value") &&
  (v.value === undefined || typeof v.value === "string");

const isStringMap = (v: Json | undefined): v is Record<string, string> =>
  typeof v === "object" && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === "string");

/** One config key: its editor, and the server's validation messages for its JSON pointer. */
export function FieldEditor({ field, pointer, value, onChange, steps, current, errors, schema }: Props) {
  const id = `f${pointer.replace(/[^A-Za-z0-9]/g, "_")}`;
  const described = errors.length ? `${id}-err` : undefined;
  let kind = field.kind;
  if (kind === "text" && value !== undefined && typeof value !== "string") kind = "json";
  if (kind === "number" && value !== undefined && typeof value !== "number") kind = "json";
  if (kind === "select" && value !== undefined && typeof value !== "string") kind = "json";
  if (kind === "target" && value !== undefined && typeof value !== "string") kind = "json";
  if (kind === "approvers" && value !== undefined && !isPlainApprover(value)) kind = "json";
  if (kind === "map" && value !== undefined && !isStringMap(value) && !schema) kind = "json";
  const common = { id, "aria-describedby": described, "aria-invalid": errors.length > 0 || undefined };
  let editor;
  switch (kind) {
    case "text":
      editor = <input {...common} value={typeof value === "string" ? value : ""} placeholder={field.hint} onChange={(e) => onChange(e.target.value === "" ? undefined : e.target.value)} />;
      break;
    case "number":
      editor = (
        <input {...common} type="number" step="any" value={value === undefined ? "" : String(value)} onChange={(e) => onChange(e.target.value === "" ? undefined : Number(e.target.value))} />
      );
      break;
    case "select": {
      const options = field.options ?? [];
      const extra = typeof value === "string" && !options.includes(value) ? [value] : [];
      editor = (
        <select {...common} value={(value as string | undefined) ?? ""} onChange={(e) => onChange(e.target.value === "" ? undefined : e.target.value)}>
          <option value="">(not set)</option>
          {[...options, ...extra].map((o) => (
            <option key={o}>{o}</option>
          ))}
        </select>
      );
      break;
    }
    case "target": {
      const choices: [string, string][] = [
        ["continue", "continue to the next step"],
        ["complete", "complete the workflow"],
        ["fail", "fail the workflow"],
        ...steps.map((s, i): [string, string] => [`skip_to:${i + 1}`, `skip to ${i + 1}. ${s.name}`]),
      ];
      if (typeof value === "string" && !choices.some(([v]) => v === value)) choices.push([value, value]);
      editor = (
        <select {...common} value={(value as string | undefined) ?? ""} onChange={(e) => onChange(e.target.value === "" ? undefined : e.target.value)}>
          <option value="">(default)</option>
          {choices
            .filter(([v]) => v !== `skip_to:${current}`)
            .map(([v, label]) => (
              <option key={v} value={v}>
                {label}
              </option>
            ))}
        </select>
      );
      break;
    }
    case "approvers": {
      const a = (value ?? {}) as { type?: string; value?: string };
      const set = (type: string | undefined, v: string | undefined) =>
        onChange(!type && !v ? undefined : { ...(type ? { type } : {}), ...(v ? { value: v } : {}) });
      editor = (
        <div className="row" role="group" aria-labelledby={`${id}-label`}>
          <select aria-label={`${field.label} type`} value={a.type ?? ""} onChange={(e) => set(e.target.value || undefined, a.value)}>
            <option value="">(type)</option>
            <option value="role">role</option>
            <option value="user">user</option>
            <option value="agent">agent</option>
          </select>
          <input {...common} aria-label={`${field.label} value`} value={a.value ?? ""} placeholder="cfo" onChange={(e) => set(a.type ?? "role", e.target.value || undefined)} />
        </div>
      );
      break;
    }
    case "map":
      editor = schema ? (
        <SchemaEditor schema={schema} label={field.label} value={value} onChange={onChange} id={id} />
      ) : (
        <MapEditor label={field.label} value={(value as Record<string, string> | undefined) ?? {}} onChange={onChange} />
      );
      break;
    default:
      if (schema) {
        editor = <SchemaEditor schema={schema} label={field.label} value={value} onChange={onChange} id={id} />;
        break;
      }
      editor = <JsonBox key={JSON.stringify(value)} attrs={{ ...common, placeholder: field.hint }} value={value} onChange={onChange} />;
  }
  return (
    <div className="field" data-pointer={pointer}>
      <span className="label-row">
        <label htmlFor={id} id={`${id}-label`}>
          {field.label}
        </label>
        <code className="muted key" aria-hidden="true">
          {field.key}
        </code>
      </span>
      {editor}
      {errors.length > 0 && (
        <div role="alert">
          <ul id={`${id}-err`} className="field-errors">
            {errors.map((e, i) => (
              <li key={i}>{e.message}</li>
            ))}
          </ul>
        </div>
      )}
    </div>
  );
}

function MapEditor({ label, value, onChange }: { label: string; value: Record<string, string>; onChange: (v: Json | undefined) => void }) {
  const entries = Object.entries(value);
  const update = (next: [string, string][]) => onChange(next.length ? Object.fromEntries(next) : undefined);
  return (
    <div className="map">
      {entries.map(([k, v], i) => (
        <div className="row" key={i}>
          <input aria-label={`${label} name ${i + 1}`} value={k} onChange={(e) => update(entries.map((x, j) => (j === i ? [e.target.value, x[1]] : x)))} />
          <input aria-label={`${label} value ${i + 1}`} value={v} onChange={(e) => update(entries.map((x, j) => (j === i ? [x[0], e.target.value] : x)))} />
          <button type="button" aria-label={`Remove ${label} entry ${i + 1}`} onClick={() => update(entries.filter((_, j) => j !== i))}>
            ✕
          </button>
        </div>
      ))}
      <button type="button" onClick={() => update([...entries, [entries.some(([k]) => k === "") ? `key${entries.length}` : "", ""]])}>
        Add {label.toLowerCase()} entry
      </button>
    </div>
  );
}
