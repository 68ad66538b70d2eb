import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useEffect, useMemo, useState } from "react";
import { Link, useLocation } from "wouter";
import { api, must, type Schemas } from "../api/client";
import { keys, useStepTypes, useTemplate } from "../api/queries";
import { can, refusal, useSignedIn } from "../auth";
import { MachineLists, MachinePanel, type Selected } from "../builder/MachineEditor";
import { errorsAt, isMachine, move, newStep, STEP_TYPES, withKey, type Json, type Step, type StepType, type TemplateDoc } from "../builder/model";
import type { Schema } from "../builder/SchemaEditor";
import { FieldErrors, StepForm, type ConfigSchemas } from "../builder/StepForm";
import { ErrorNote, Section, Status } from "../components/common";
import { FlowGraph } from "../components/FlowGraph";
import { Secrets } from "../components/Secrets";
import { VersionDiff } from "../components/VersionDiff";
import { mayStart } from "./Start";

type FieldError = Schemas["FieldError"];
const EMPTY: TemplateDoc = { name: "", trigger_type: "manual", steps: [] };
const TRIGGERS = ["on_transfer", "event", "manual", "scheduled", "threshold"];
const OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "starts_with"];

export function TemplateBuilder({ id, version }: { id?: string; version?: number }) {
  const loaded = useTemplate(id, version);
  if (id && !loaded.data) return loaded.error ? <ErrorNote error={loaded.error} /> : <p role="status">Loading…</p>;
  const doc = (loaded.data?.document as TemplateDoc | undefined) ?? EMPTY;
  return <Editor key={`${id ?? "new"}:${version ?? ""}`} id={id} template={loaded.data} initial={doc} />;
}

function Editor({ id, template, initial }: { id?: string; template?: Schemas["Template"]; initial: TemplateDoc }) {
  const me = useSignedIn();
  const mayWrite = can(me, "templates:write");
  const [doc, setDoc] = useState<TemplateDoc>(initial);
  const [selected, setSelected] = useState(0);
  const [machineSel, setMachineSel] = useState<Selected>({ kind: "state", index: 0 });
  const [addType, setAddType] = useState<StepType>("approval");
  const [errors, setErrors] = useState<FieldError[]>([]);
  const [showJson, setShowJson] = useState(false);
  const [, navigate] = useLocation();
  const qc = useQueryClient();

  // The server validates (core/validation.py); each message is pinned to the field its pointer names.
  useEffect(() => {
    if (!mayWrite) return;
    const controller = new AbortController();
    const timer = setTimeout(async () => {
      const body = doc as unknown as Schemas["TemplateDocument"];
      try {
        const result = id
          ? await must(api.POST("/v1/workflows/templates/{id}/validate", { params: { path: { id } }, body, signal: controller.signal }))
          : await must(api.POST("/v1/workflows/templates/validate", { body, signal: controller.signal }));
        setErrors(result.errors);
      } catch {
        /* aborted or offline: keep the last result */
      }
    }, 400);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [doc, id, mayWrite]);

  const save = useMutation({
    mutationFn: (document: TemplateDoc) => {
      const body = document as unknown as Schemas["TemplateDocument"];
      return id
        ? must(api.PUT("/v1/workflows/templates/{id}", { params: { path: { id } }, body }))
        : must(api.POST("/v1/workflows/templates", { body }));
    },
    onSuccess: (saved) => {
      void qc.invalidateQueries({ queryKey: keys.templates });
      navigate(`/templates/${saved.id}/${saved.version}`);
    },
  });
  const deactivate = useMutation({
    mutationFn: () => must(api.DELETE("/v1/workflows/templates/{id}", { params: { path: { id: id ?? "" } } })),
    onSuccess: (saved) => {
      void qc.invalidateQueries({ queryKey: ["templates"] });
      navigate(`/templates/${saved.id}/${saved.version}`);
    },
  });

  const stepTypes = useStepTypes();
  const schemas = useMemo<ConfigSchemas>(
    () => Object.fromEntries((stepTypes.data?.items ?? []).map((t) => [t.type, t.config_schema as Schema])),
    [stepTypes.data],
  );
  const machine = isMachine(doc);
  const steps = useMemo(() => doc.steps ?? [], [doc.steps]);
  const step = steps[selected];
  const setStep = (i: number, next: Step) => setDoc((d) => ({ ...d, steps: (d.steps ?? []).map((s, j) => (j === i ? next : s)) }));
  const stepErrors = (i: number) => errorsAt(errors, `/steps/${i}`);
  // Messages shown above the forms: those no field of the forms below shows.
  const docErrors = errors.filter(
    (e) => !/^\/(steps|states|transitions)\/\d+/.test(e.pointer) && !e.pointer.startsWith("/trigger_config") && e.pointer !== "/name",
  );

  return (
    <>
      <h1>
        {id ? `Template ${doc.name || id}` : "New template"} {template && <span className="muted">v{template.version}</span>}{" "}
        {template && <Status value={template.status} />}
      </h1>
      {!mayWrite && <p className="note">{refusal(me, "change templates")}: the builder is read-only.</p>}
      <div className="toolbar row">
        <button type="button" disabled={!mayWrite || save.isPending} onClick={() => save.mutate(doc)}>
          {id ? "Save as new version" : "Save template"}
        </button>
        {id && template?.status === "ACTIVE" && (
          <button type="button" disabled={!mayWrite} onClick={() => deactivate.mutate()}>
            Deactivate
          </button>
        )}
        {id && template?.status !== "ACTIVE" && (
          <button type="button" disabled={!mayWrite} onClick={() => save.mutate({ ...doc, status: "ACTIVE" })}>
            Activate
          </button>
        )}
        <button type="button" aria-pressed={showJson} onClick={() => setShowJson((v) => !v)}>
          {showJson ? "Hide JSON" : "Show JSON"}
        </button>
        <span className="muted" aria-live="polite" data-testid="validity">
          {errors.length ? `${errors.length} problem(s)` : "valid"}
        </span>
        {id && template?.status === "ACTIVE" && mayStart(me, id) && (
          <Link href={`/templates/${id}/start`} className="button">
            Start
          </Link>
        )}
        <Link href="/templates">All templates</Link>
      </div>
      <ErrorNote error={save.error ?? deactivate.error} />
      {docErrors.map((e, i) => (
        <p key={i} role="alert" className="error">
          {e.pointer || "/"}: {e.message}
        </p>
      ))}
      <div className="builder">
        <div className="builder-left">
          <Section title="Template">
            <div className="field" data-pointer="/name">
              <label htmlFor="t-name">Name</label>
              <input id="t-name" value={doc.name} onChange={(e) => setDoc((d) => ({ ...d, name: e.target.value }))} />
              <FieldErrors errors={errorsAt(errors, "/name")} />
            </div>
            <div className="field">
              <label htmlFor="t-desc">Description</label>
              <input id="t-desc" value={doc.description ?? ""} onChange={(e) => setDoc((d) => withKey(d, "description", e.target.value || undefined))} />
            </div>
            {!id && (
              <div className="field">
                <label htmlFor="t-shape">Template shape</label>
                <select id="t-shape" value={machine ? "machine" : "steps"} onChange={(e) => setDoc((d) => toShape(d, e.target.value === "machine"))}>
                  <option value="steps">step list</option>
                  <option value="machine">state machine (states and transitions)</option>
                </select>
              </div>
            )}
            <Trigger doc={doc} setDoc={setDoc} errors={errors} />
          </Section>
          {machine ? (
            <MachineLists doc={doc} setDoc={setDoc} errors={errors} selected={machineSel} setSelected={setMachineSel} />
          ) : (
          <Section title="Steps">
              <ol className="step-list">
                {steps.map((s, i) => (
                  <li key={i} className={i === selected ? "selected" : undefined}>
                    <button type="button" className="link" aria-current={i === selected || undefined} onClick={() => setSelected(i)}>
                      {i + 1}. {s.name} <span className="muted">({s.type})</span>
                      {stepErrors(i).length > 0 && <span className="badge" aria-label={`${stepErrors(i).length} problems`}>!</span>}
                    </button>
                    <span className="row">
                      <button type="button" aria-label={`Move step ${i + 1} up`} disabled={i === 0} onClick={() => { setDoc((d) => ({ ...d, steps: move(d.steps ?? [], i, i - 1) })); setSelected(i - 1); }}>
                        ↑
                      </button>
                      <button type="button" aria-label={`Move step ${i + 1} down`} disabled={i === steps.length - 1} onClick={() => { setDoc((d) => ({ ...d, steps: move(d.steps ?? [], i, i + 1) })); setSelected(i + 1); }}>
                        ↓
                      </button>
                      <button type="button" aria-label={`Remove step ${i + 1}`} onClick={() => { setDoc((d) => ({ ...d, steps: (d.steps ?? []).filter((_, j) => j !== i) })); setSelected(Math.max(0, Math.min(selected, steps.length - 2))); }}>
                        ✕
                      </button>
                    </span>
                  </li>
                ))}
              </ol>
              <div className="row">
                <label>
                  New step type
                  <select value={addType} onChange={(e) => setAddType(e.target.value as StepType)}>
                    {STEP_TYPES.map((t) => (
                      <option key={t}>{t}</option>
                    ))}
                  </select>
                </label>
                <button
                  type="button"
                  onClick={() => {
                    setDoc((d) => ({ ...d, steps: [...(d.steps ?? []), newStep(addType, new Set((d.steps ?? []).map((s) => s.name)))] }));
                    setSelected(steps.length);
                  }}
                >
                  Add step
                </button>
              </div>
            </Section>
          )}
        </div>
        <div className="builder-main">
          {machine ? (
            <MachinePanel doc={doc} setDoc={setDoc} errors={errors} schemas={schemas} selected={machineSel} />
          ) : (
            <>
          {step ? (
                <Section title={`Step ${selected + 1}: ${step.type}`}>
                  <StepForm
                    key={selected}
                    step={step}
                    pointer={`/steps/${selected}`}
                    onChange={(next) => setStep(selected, next)}
                    errors={errors}
                    schemas={schemas}
                    steps={steps}
                    current={selected + 1}
                  />
                </Section>
              ) : (
                <p>Add a step to start.</p>
              )}
              <Section title="Graph">
                <FlowGraph steps={steps} current={step ? selected + 1 : null} label="Template graph" />
              </Section>
            </>
          )}
          {showJson && <RawJson doc={doc} setDoc={setDoc} />}
          {id && template && (template.versions?.length ?? 0) > 1 && (
            <VersionDiff id={id} versions={template.versions ?? []} current={template.version} />
          )}
          {id && can(me, "secrets:write") && <Secrets id={id} />}
        </div>
      </div>
    </>
  );
}

type Cond = { field?: string; op?: string; value?: Json };

function Trigger({ doc, setDoc, errors }: { doc: TemplateDoc; setDoc: (f: (d: TemplateDoc) => TemplateDoc) => void; errors: FieldError[] }) {
  const config = doc.trigger_config ?? {};
  const conditions = (Array.isArray(config.conditions) ? config.conditions : []) as Cond[];
  const setConfig = (key: string, value: Json | undefined) =>
    setDoc((d) => {
      const next = withKey(d.trigger_config ?? {}, key, value);
      return withKey(d, "trigger_config", Object.keys(next).length ? next : undefined);
    });
  const setConditions = (next: Cond[]) => setConfig("conditions", next.length ? (next as Json) : undefined);
  const shown = (v: Json | undefined) => (v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v));
  const parsed = (text: string): Json => {
    try {
      return JSON.parse(text) as Json;
    } catch {
      return text;
    }
  };
  const type = doc.trigger_type ?? "manual";
  return (
    <>
      <div className="field" data-pointer="/trigger_type">
        <label htmlFor="t-trigger">Trigger</label>
        <select id="t-trigger" value={type} onChange={(e) => setDoc((d) => ({ ...d, trigger_type: e.target.value }))}>
          {[...TRIGGERS, ...(TRIGGERS.includes(type) ? [] : [type])].map((t) => (
            <option key={t}>{t}</option>
          ))}
        </select>
        <FieldErrors errors={errorsAt(errors, "/trigger_type")} />
      </div>
      {(type === "scheduled" || type === "schedule") && (
        <div className="field" data-pointer="/trigger_config/cron">
          <label htmlFor="t-cron">Cron</label>
          <input id="t-cron" value={shown(config.cron)} onChange={(e) => setConfig("cron", e.target.value || undefined)} placeholder="0 9 * * 1-5" />
          <FieldErrors errors={errorsAt(errors, "/trigger_config/cron")} />
        </div>
      )}
      {type === "threshold" && (
        <fieldset>
          <legend>Threshold</legend>
          {(["field", "op", "value"] as const).map((k) => (
            <label key={k}>
              Threshold {k}
              <input value={shown(config[k])} onChange={(e) => setConfig(k, e.target.value === "" ? undefined : k === "value" ? parsed(e.target.value) : e.target.value)} />
            </label>
          ))}
        </fieldset>
      )}
      <div className="field" data-pointer="/trigger_config/topic">
        <label htmlFor="t-topic">Topic (optional)</label>
        <input id="t-topic" value={shown(config.topic)} onChange={(e) => setConfig("topic", e.target.value || undefined)} />
      </div>
      <fieldset className="conditions" data-pointer="/trigger_config/conditions">
        <legend>Trigger conditions</legend>
        {conditions.map((c, i) => (
          <div className="row" key={i}>
            <input aria-label={`Condition ${i + 1} field`} value={c.field ?? ""} placeholder="metadata.type" onChange={(e) => setConditions(conditions.map((x, j) => (j === i ? { ...x, field: e.target.value } : x)))} />
            <select aria-label={`Condition ${i + 1} operator`} value={c.op ?? "eq"} onChange={(e) => setConditions(conditions.map((x, j) => (j === i ? { ...x, op: e.target.value } : x)))}>
              {OPS.map((o) => (
                <option key={o}>{o}</option>
              ))}
            </select>
            <input aria-label={`Condition ${i + 1} value`} value={shown(c.value)} onChange={(e) => setConditions(conditions.map((x, j) => (j === i ? { ...x, value: parsed(e.target.value) } : x)))} />
            <button type="button" aria-label={`Remove condition ${i + 1}`} onClick={() => setConditions(conditions.filter((_, j) => j !== i))}>
              ✕
            </button>
          </div>
        ))}
        <button type="button" onClick={() => setConditions([...conditions, { field: "", op: "eq", value: "" }])}>
          Add condition
        </button>
        <FieldErrors errors={errorsAt(errors, "/trigger_config")} />
      </fieldset>
    </>
  );
}

function RawJson({ doc, setDoc }: { doc: TemplateDoc; setDoc: (f: (d: TemplateDoc) => TemplateDoc) => void }) {
  const text = JSON.stringify(doc, null, 2);
  const [draft, setDraft] = useState<string | null>(null);
  const [bad, setBad] = useState<string | null>(null);
  return (
    <Section title="JSON">
      <textarea
        aria-label="Template JSON"
        className="raw-json"
        rows={20}
        value={draft ?? text}
        onChange={(e) => {
          setDraft(e.target.value);
          try {
            const next = JSON.parse(e.target.value) as TemplateDoc;
            if (next && typeof next === "object" && (Array.isArray(next.steps) || Array.isArray(next.states))) {
              setDoc(() => next);
              setBad(null);
            } else setBad("a template is an object with a steps list (or states and transitions)");
          } catch (err) {
            setBad(err instanceof Error ? err.message : "not valid JSON");
          }
        }}
        onBlur={() => setDraft(null)}
      />
      {bad && <p className="error">{bad}</p>}
    </Section>
  );
}

/** A new template switches between the two shapes (docs/state-machines.md); what the other shape had goes. */
function toShape(doc: TemplateDoc, machine: boolean): TemplateDoc {
  const rest = { ...doc };
  delete rest.steps;
  delete rest.states;
  delete rest.transitions;
  return machine ? { ...rest, states: [], transitions: [] } : { ...rest, steps: [] };
}
