// One step's form: name, id, description and a field per config key of its type (fields.ts picks the
// editor; nested values get forms drawn from the type's JSON Schema). Used for the steps of a step list
// and for the actions of a state machine (entry/exit actions, a transition's action), at any pointer.
import type { Schemas } from "../api/client";
import { FieldEditor } from "./FieldEditor";
import { FIELDS } from "./fields";
import { errorsAt, withKey, type Config, type Json, type Step } from "./model";
import type { Schema } from "./SchemaEditor";

type FieldError = Schemas["FieldError"];
export type ConfigSchemas = Partial<Record<string, Schema>>;

type Props = {
  step: Step;
  pointer: string; // "/steps/2", "/states/1/entry_actions/0", "/transitions/3/action"
  onChange: (next: Step) => void;
  errors: FieldError[];
  schemas: ConfigSchemas;
  steps?: Step[]; // a step list's steps, for branch targets
  current?: number;
  prefix?: string; // "" labels "Step name"; "Entry action 1" labels "Entry action 1 name"
};

export function StepForm({ step, pointer, onChange, errors, schemas, steps = [], current = 0, prefix = "" }: Props) {
  const base = `f${pointer.replace(/[^A-Za-z0-9]/g, "_")}`;
  const lbl = (what: string) => (prefix ? `${prefix} ${what}` : `Step ${what}`);
  const known = FIELDS[step.type].map((f) => `${pointer}/config/${f.key}`);
  const loose = errorsAt(errors, pointer).filter(
    (e) => !known.some((p) => e.pointer === p || e.pointer.startsWith(`${p}/`)) && !["name", "id", "description"].some((k) => e.pointer === `${pointer}/${k}`),
  );
  const schema = schemas[step.type];
  const setConfig = (key: string, value: Json | undefined) => onChange({ ...step, config: withKey(step.config ?? {}, key, value) });
  return (
    <>
      <div className="field" data-pointer={`${pointer}/name`}>
        <label htmlFor={`${base}-name`}>{lbl("name")}</label>
        <input id={`${base}-name`} value={step.name} onChange={(e) => onChange({ ...step, name: e.target.value })} />
        <FieldErrors errors={errorsAt(errors, `${pointer}/name`)} />
      </div>
      <div className="field" data-pointer={`${pointer}/id`}>
        <label htmlFor={`${base}-id`}>{lbl("id")} (optional, for steps.ID in expressions)</label>
        <input id={`${base}-id`} value={step.id ?? ""} onChange={(e) => onChange(withKey(step, "id", e.target.value || undefined))} />
        <FieldErrors errors={errorsAt(errors, `${pointer}/id`)} />
      </div>
      <div className="field">
        <label htmlFor={`${base}-desc`}>{lbl("description")}</label>
        <input id={`${base}-desc`} value={step.description ?? ""} onChange={(e) => onChange(withKey(step, "description", e.target.value || undefined))} />
      </div>
      <FieldErrors errors={loose} />
      <div className="config-grid">
        {FIELDS[step.type].map((f) => {
          const at = `${pointer}/config/${f.key}`;
          return (
            <FieldEditor
              key={`${pointer}:${f.key}`}
              field={f}
              pointer={at}
              value={(step.config ?? ({} as Config))[f.key]}
              onChange={(v) => setConfig(f.key, v)}
              steps={steps}
              current={current}
              errors={errorsAt(errors, at)}
              schema={schema?.properties?.[f.key]}
            />
          );
        })}
      </div>
    </>
  );
}

export function FieldErrors({ errors }: { errors: FieldError[] }) {
  if (!errors.length) return null;
  return (
    <div role="alert">
      <ul className="field-errors">
        {errors.map((e, i) => (
          <li key={i}>{e.message}</li>
        ))}
      </ul>
    </div>
  );
}
