// A nested config value edited through forms drawn from its JSON Schema: the step types' config schemas
// that GET /v1/workflows/step-types serves (core/steps/, the one home of each step's config). Objects are
// labelled fieldsets, maps (headers, params, extract_fields) and arrays (approvers, recipients) are rows to
// add and remove, scalars are inputs, `oneOf` is a choice of shape. A value the schema cannot show as a
// form keeps a JSON box for that one value, so opening and saving a template never changes it.
import { useState, type TextareaHTMLAttributes } from "react";
import type { Json } from "./model";

export type Schema = {
  type?: string | string[];
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  items?: Schema;
  oneOf?: Schema[];
  anyOf?: Schema[];
  enum?: Json[];
  description?: string;
  examples?: Json[];
  default?: Json;
};

type Shape = "object" | "map" | "array" | "enum" | "string" | "number" | "boolean" | "choice" | "any";

const isObject = (v: Json | undefined): v is { [key: string]: Json } => typeof v === "object" && v !== null && !Array.isArray(v);
const typeOf = (s: Schema): string | undefined => (Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type);

export function shapeOf(s: Schema): Shape {
  if (s.oneOf || s.anyOf) return "choice";
  if (s.enum) return "enum";
  const t = typeOf(s);
  if (t === "object") return s.properties ? "object" : "map";
  if (t === "array") return "array";
  if (t === "string") return "string";
  if (t === "number" || t === "integer") return "number";
  if (t === "boolean") return "boolean";
  return "any";
}

/** Whether the forms can show `value` as it is (else it keeps a JSON box and stays untouched). */
export function fits(s: Schema, value: Json | undefined): boolean {
  if (value === undefined) return true;
  switch (shapeOf(s)) {
    case "choice":
      return (s.oneOf ?? s.anyOf ?? []).some((v) => fits(v, value));
    case "enum":
      return typeof value === "string" && (s.enum ?? []).includes(value);
    case "string":
      return typeof value === "string";
    case "number":
      return typeof value === "number";
    case "boolean":
      return typeof value === "boolean";
    case "array":
      return Array.isArray(value) && value.every((x) => fits(s.items ?? {}, x));
    case "object": {
      if (!isObject(value)) return false;
      const extra = s.additionalProperties;
      return Object.entries(value).every(([k, v]) => {
        const sub = s.properties?.[k] ?? (typeof extra === "object" ? extra : extra === false ? undefined : {});
        return sub !== undefined && fits(sub, v);
      });
    }
    case "map": {
      const extra = typeof s.additionalProperties === "object" ? s.additionalProperties : {};
      return isObject(value) && Object.values(value).every((v) => fits(extra, v));
    }
    default:
      return true; // any JSON: a text box for a string, a JSON box for the rest
  }
}

const human = (key: string) => key.replace(/_/g, " ");

function variantName(s: Schema, i: number): string {
  const shape = shapeOf(s);
  if (shape === "enum") return "one of the choices";
  if (shape === "array") return "a list";
  if (shape === "object" || shape === "map") return "an object";
  if (shape === "string") return "text";
  if (shape === "number") return "a number";
  return `shape ${i + 1}`;
}

type Props = { schema: Schema; label: string; value: Json | undefined; onChange: (value: Json | undefined) => void; id?: string };

/** One value and everything inside it; `label` names every control (nested ones: "Retries max retries"). */
export function SchemaEditor({ schema, label, value, onChange, id }: Props) {
  if (!fits(schema, value)) return <JsonBox key={JSON.stringify(value)} attrs={{ id, "aria-label": `${label} (JSON)` }} value={value} onChange={onChange} />;
  switch (shapeOf(schema)) {
    case "choice":
      return <Choice schema={schema} label={label} value={value} onChange={onChange} id={id} />;
    case "enum":
      return (
        <select id={id} aria-label={label} value={typeof value === "string" ? value : ""} onChange={(e) => onChange(e.target.value || undefined)}>
          <option value="">(not set)</option>
          {(schema.enum ?? []).map((o) => (
            <option key={String(o)}>{String(o)}</option>
          ))}
        </select>
      );
    case "number":
      return (
        <input id={id} aria-label={label} type="number" step="any" value={value === undefined ? "" : String(value)}
          onChange={(e) => onChange(e.target.value === "" ? undefined : Number(e.target.value))} />
      );
    case "boolean":
      return (
        <select id={id} aria-label={label} value={value === undefined ? "" : String(value)} onChange={(e) => onChange(e.target.value === "" ? undefined : e.target.value === "true")}>
          <option value="">(not set)</option>
          <option value="true">yes</option>
          <option value="false">no</option>
        </select>
      );
    case "object":
      return <ObjectForm schema={schema} label={label} value={value as { [key: string]: Json } | undefined} onChange={onChange} />;
    case "map":
      return <MapRows schema={typeof schema.additionalProperties === "object" ? schema.additionalProperties : {}} label={label} value={(value as { [key: string]: Json } | undefined) ?? {}} onChange={onChange} />;
    case "array":
      return <ArrayRows schema={schema.items ?? {}} label={label} value={(value as Json[] | undefined) ?? []} onChange={onChange} />;
    default:
      // any JSON (a webhook or request body): an object or a list as rows, text as text
      if (isObject(value)) return <MapRows schema={{}} label={label} value={value} onChange={onChange} />;
      if (Array.isArray(value)) return <ArrayRows schema={{}} label={label} value={value} onChange={onChange} />;
      if (value !== undefined && typeof value !== "string") return <JsonBox key={JSON.stringify(value)} attrs={{ id, "aria-label": `${label} (JSON)` }} value={value} onChange={onChange} />;
      return <input id={id} aria-label={label} value={value ?? ""} placeholder={typeof schema.examples?.[0] === "string" ? schema.examples[0] : undefined} onChange={(e) => onChange(e.target.value === "" ? undefined : e.target.value)} />;
  }
}

function Choice({ schema, label, value, onChange, id }: Props) {
  const variants = schema.oneOf ?? schema.anyOf ?? [];
  const fitting = variants.findIndex((v) => value !== undefined && fits(v, value));
  const [picked, setPicked] = useState(fitting >= 0 ? fitting : 0);
  const index = fitting >= 0 ? fitting : picked;
  const variant = variants[index] ?? {};
  return (
    <div className="choice">
      <select aria-label={`${label} shape`} value={index} onChange={(e) => { setPicked(Number(e.target.value)); onChange(undefined); }}>
        {variants.map((v, i) => (
          <option key={i} value={i}>
            {variantName(v, i)}
          </option>
        ))}
      </select>
      <SchemaEditor schema={variant} label={label} value={value} onChange={onChange} id={id} />
    </div>
  );
}

function ObjectForm({ schema, label, value, onChange }: { schema: Schema; label: string; value?: { [key: string]: Json }; onChange: (v: Json | undefined) => void }) {
  const current = value ?? {};
  const set = (key: string, v: Json | undefined) => {
    const next = { ...current };
    if (v === undefined) delete next[key];
    else next[key] = v;
    onChange(Object.keys(next).length ? next : undefined);
  };
  return (
    <fieldset className="nested">
      <legend>{label}</legend>
      {Object.entries(schema.properties ?? {}).map(([key, sub]) => (
        <div className="field" key={key}>
          <span className="muted">{human(key)}{sub.description ? ` — ${sub.description}` : ""}</span>
          <SchemaEditor schema={sub} label={`${label} ${human(key)}`} value={current[key]} onChange={(v) => set(key, v)} />
        </div>
      ))}
    </fieldset>
  );
}

function MapRows({ schema, label, value, onChange }: { schema: Schema; label: string; value: { [key: string]: Json }; onChange: (v: Json | undefined) => void }) {
  const entries = Object.entries(value);
  const update = (next: [string, Json][]) => onChange(next.length ? Object.fromEntries(next) : undefined);
  return (
    <div className="map" role="group" aria-label={label}>
      {entries.map(([k, v], i) => (
        <div className="row" key={i}>
          <input aria-label={`${label} name ${i + 1}`} value={k} onChange={(e) => update(entries.map((x, j) => (j === i ? [e.target.value, x[1]] : x)))} />
          <SchemaEditor schema={schema} label={`${label} value ${i + 1}`} value={v} onChange={(nv) => update(entries.map((x, j) => (j === i ? [x[0], nv ?? ""] : x)))} />
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

function ArrayRows({ schema, label, value, onChange }: { schema: Schema; label: string; value: Json[]; onChange: (v: Json | undefined) => void }) {
  const update = (next: Json[]) => onChange(next.length ? next : undefined);
  const blank: Json = shapeOf(schema) === "object" || shapeOf(schema) === "map" ? {} : "";
  return (
    <div className="list-rows" role="group" aria-label={label}>
      {value.map((v, i) => (
        <div className="row" key={i}>
          <SchemaEditor schema={schema} label={`${label} ${i + 1}`} value={v} onChange={(nv) => update(value.map((x, j) => (j === i ? (nv ?? blank) : x)))} />
          <button type="button" aria-label={`Remove item ${i + 1} of ${label}`} onClick={() => update(value.filter((_, j) => j !== i))}>
            ✕
          </button>
        </div>
      ))}
      <button type="button" onClick={() => update([...value, blank])}>
        Add {label.toLowerCase()} item
      </button>
    </div>
  );
}

/** The last resort for a value no form fits: its JSON, parsed when the box loses focus. */
type JsonBoxProps = {
  value: Json | undefined;
  onChange: (v: Json | undefined) => void;
  /** the textarea's own attributes: an id, and either an aria-label or the labelling a form field gives it */
  attrs: TextareaHTMLAttributes<HTMLTextAreaElement>;
};

export function JsonBox({ value, onChange, attrs }: JsonBoxProps) {
  const [text, setText] = useState(value === undefined ? "" : JSON.stringify(value, null, 2));
  const [bad, setBad] = useState<string | null>(null);
  return (
    <>
      <textarea
        {...attrs}
        rows={Math.min(8, Math.max(2, text.split("\n").length))}
        value={text}
        onChange={(e) => setText(e.target.value)}
        onBlur={() => {
          if (!text.trim()) return onChange(undefined);
          try {
            onChange(JSON.parse(text) as Json);
            setBad(null);
          } catch {
            setBad("not valid JSON");
          }
        }}
      />
      {bad && <span className="error">{bad}</span>}
    </>
  );
}
