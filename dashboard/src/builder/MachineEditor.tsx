// The builder for state-machine templates (docs/state-machines.md, core/machine.py): states and
// transitions listed (add, remove, reorder: the first state is the initial one, automatic transitions are
// tried in declared order), each edited through a form -- a state's terminal status and its entry and exit
// actions, a transition's from/to, condition, automatic, allowed roles, approval and action -- the actions'
// configs drawn from their step type's JSON Schema, the graph redrawn as you edit. The server's messages
// land at the field their JSON pointer names, as for a step list.
import { useState } from "react";
import type { Schemas } from "../api/client";
import { Section } from "../components/common";
import { MachineGraph } from "../components/MachineGraph";
import { FieldEditor } from "./FieldEditor";
import { FIELDS } from "./fields";
import {
  AFTER_UNITS,
  errorsAt,
  move,
  newStep,
  renameState,
  STEP_TYPES,
  timingOf,
  withKey,
  withTiming,
  type AfterUnit,
  type Json,
  type MachineState,
  type MachineTransition,
  type Step,
  type StepType,
  type TemplateDoc,
  type Timing,
} from "./model";
import { SchemaEditor } from "./SchemaEditor";
import { FieldErrors, StepForm, type ConfigSchemas } from "./StepForm";

type FieldError = Schemas["FieldError"];
type Props = {
  doc: TemplateDoc;
  setDoc: (f: (d: TemplateDoc) => TemplateDoc) => void;
  errors: FieldError[];
  schemas: ConfigSchemas;
  selected: Selected;
  setSelected: (s: Selected) => void;
};
export type Selected = { kind: "state" | "transition"; index: number };

const TERMINALS = ["COMPLETED", "FAILED", "CANCELLED"];
const ROLES_SCHEMA = { type: "array", items: { type: "string" } };

/** The builder's left column for a state machine: its states and transitions, to select and reorder. */
export function MachineLists({ doc, setDoc, errors, selected, setSelected }: Omit<Props, "schemas">) {
  const states = doc.states ?? [];
  const transitions = doc.transitions ?? [];
  const setStates = (f: (s: MachineState[]) => MachineState[]) => setDoc((d) => ({ ...d, states: f(d.states ?? []) }));
  const setTransitions = (f: (t: MachineTransition[]) => MachineTransition[]) => setDoc((d) => ({ ...d, transitions: f(d.transitions ?? []) }));
  const count = (pointer: string) => errorsAt(errors, pointer).length;
  const state = selected.kind === "state" ? states[selected.index] : undefined;

  const addState = () => {
    const taken = new Set(states.map((s) => s.name));
    let name = "state";
    for (let i = 2; taken.has(name); i++) name = `state_${i}`;
    setStates((s) => [...s, { name }]);
    setSelected({ kind: "state", index: states.length });
  };
  const addTransition = () => {
    const from = state?.name ?? states[0]?.name ?? "";
    const to = states.find((s) => s.name !== from)?.name ?? from;
    setTransitions((t) => [...t, { from, to }]);
    setSelected({ kind: "transition", index: transitions.length });
  };

  return (
    <>
      <div className="machine-lists">
        <Section title="States">
          <p className="muted">The first state is the initial one.</p>
          <ol className="step-list">
            {states.map((s, i) => (
              <li key={i} className={selected.kind === "state" && selected.index === i ? "selected" : undefined}>
                <button type="button" className="link" aria-current={(selected.kind === "state" && selected.index === i) || undefined} onClick={() => setSelected({ kind: "state", index: i })}>
                  State {s.name}
                  {s.terminal ? <span className="muted"> ({typeof s.terminal === "string" ? s.terminal : "terminal"})</span> : null}
                  {count(`/states/${i}`) > 0 && <span className="badge" aria-label={`${count(`/states/${i}`)} problems`}>!</span>}
                </button>
                <span className="row">
                  <button type="button" aria-label={`Move state ${s.name} up`} disabled={i === 0} onClick={() => { setStates((x) => move(x, i, i - 1)); setSelected({ kind: "state", index: i - 1 }); }}>
                    ↑
                  </button>
                  <button type="button" aria-label={`Move state ${s.name} down`} disabled={i === states.length - 1} onClick={() => { setStates((x) => move(x, i, i + 1)); setSelected({ kind: "state", index: i + 1 }); }}>
                    ↓
                  </button>
                  <button type="button" aria-label={`Remove state ${s.name}`} onClick={() => { setStates((x) => x.filter((_, j) => j !== i)); setSelected({ kind: "state", index: Math.max(0, i - 1) }); }}>
                    ✕
                  </button>
                </span>
              </li>
            ))}
          </ol>
          <button type="button" onClick={addState}>
            Add state
          </button>
        </Section>
        <Section title="Transitions">
          <ol className="step-list">
            {transitions.map((t, i) => (
              <li key={i} className={selected.kind === "transition" && selected.index === i ? "selected" : undefined}>
                <button type="button" className="link" aria-current={(selected.kind === "transition" && selected.index === i) || undefined} onClick={() => setSelected({ kind: "transition", index: i })}>
                  {t.from} → {t.to}
                  {t.automatic ? <span className="muted"> (automatic)</span> : null}
                  {count(`/transitions/${i}`) > 0 && <span className="badge" aria-label={`${count(`/transitions/${i}`)} problems`}>!</span>}
                </button>
                <span className="row">
                  <button type="button" aria-label={`Move transition ${i + 1} up`} disabled={i === 0} onClick={() => { setTransitions((x) => move(x, i, i - 1)); setSelected({ kind: "transition", index: i - 1 }); }}>
                    ↑
                  </button>
                  <button type="button" aria-label={`Move transition ${i + 1} down`} disabled={i === transitions.length - 1} onClick={() => { setTransitions((x) => move(x, i, i + 1)); setSelected({ kind: "transition", index: i + 1 }); }}>
                    ↓
                  </button>
                  <button type="button" aria-label={`Remove transition ${i + 1}`} onClick={() => { setTransitions((x) => x.filter((_, j) => j !== i)); setSelected({ kind: "transition", index: Math.max(0, i - 1) }); }}>
                    ✕
                  </button>
                </span>
              </li>
            ))}
          </ol>
          <button type="button" disabled={states.length === 0} onClick={addTransition}>
            Add transition
          </button>
        </Section>
      </div>
    </>
  );
}

/** The builder's main column for a state machine: the selected state's or transition's form, the graph. */
export function MachinePanel({ doc, setDoc, errors, schemas, selected }: Omit<Props, "setSelected">) {
  const states = doc.states ?? [];
  const transitions = doc.transitions ?? [];
  const setStates = (f: (s: MachineState[]) => MachineState[]) => setDoc((d) => ({ ...d, states: f(d.states ?? []) }));
  const setTransitions = (f: (t: MachineTransition[]) => MachineTransition[]) => setDoc((d) => ({ ...d, transitions: f(d.transitions ?? []) }));
  const state = selected.kind === "state" ? states[selected.index] : undefined;
  const transition = selected.kind === "transition" ? transitions[selected.index] : undefined;
  return (
    <>
      {state && (
        <StateForm
          key={`s${selected.index}`}
          state={state}
          pointer={`/states/${selected.index}`}
          errors={errors}
          schemas={schemas}
          onRename={(name) => setDoc((d) => renameState(d, selected.index, name))}
          onChange={(next) => setStates((x) => x.map((s, j) => (j === selected.index ? next : s)))}
        />
      )}
      {transition && (
        <TransitionForm
          key={`t${selected.index}`}
          transition={transition}
          states={states}
          pointer={`/transitions/${selected.index}`}
          errors={errors}
          schemas={schemas}
          onChange={(next) => setTransitions((x) => x.map((t, j) => (j === selected.index ? next : t)))}
        />
      )}
      <Section title="Graph">
        <MachineGraph states={states} transitions={transitions} current={state?.name ?? null} label="State machine graph" />
      </Section>
    </>
  );
}

function StateForm({ state, pointer, errors, schemas, onRename, onChange }: {
  state: MachineState;
  pointer: string;
  errors: FieldError[];
  schemas: ConfigSchemas;
  onRename: (name: string) => void;
  onChange: (next: MachineState) => void;
}) {
  const terminal = state.terminal;
  const terminalText = terminal === undefined ? "" : String(terminal);
  return (
    <Section title={`State ${state.name}`}>
      <FieldErrors errors={errors.filter((e) => e.pointer === pointer)} />
      <div className="field" data-pointer={`${pointer}/name`}>
        <label htmlFor="state-name">State name</label>
        <input id="state-name" value={state.name} onChange={(e) => onRename(e.target.value)} />
        <FieldErrors errors={errorsAt(errors, `${pointer}/name`)} />
      </div>
      <div className="field" data-pointer={`${pointer}/description`}>
        <label htmlFor="state-desc">State description</label>
        <input id="state-desc" value={state.description ?? ""} onChange={(e) => onChange(withKey(state, "description", e.target.value || undefined))} />
      </div>
      <div className="field" data-pointer={`${pointer}/terminal`}>
        <label htmlFor="state-terminal">Terminal (the instance ends here with this status)</label>
        <select
          id="state-terminal"
          value={terminalText}
          onChange={(e) => {
            const v = e.target.value;
            onChange(withKey(state, "terminal", v === "" ? undefined : v === "true" ? true : v === "false" ? false : v));
          }}
        >
          <option value="">not terminal</option>
          {[...TERMINALS, ...(terminalText && !TERMINALS.includes(terminalText) ? [terminalText] : [])].map((t) => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </select>
        <FieldErrors errors={errorsAt(errors, `${pointer}/terminal`)} />
      </div>
      <Actions title="Entry actions" one="Entry action" pointer={`${pointer}/entry_actions`} actions={state.entry_actions} errors={errors} schemas={schemas}
        onChange={(next) => onChange(withKey(state, "entry_actions", next as Json | undefined))} />
      <Actions title="Exit actions" one="Exit action" pointer={`${pointer}/exit_actions`} actions={state.exit_actions} errors={errors} schemas={schemas}
        onChange={(next) => onChange(withKey(state, "exit_actions", next as Json | undefined))} />
    </Section>
  );
}

/** A state's entry or exit actions: steps of the six types, run in order. */
function Actions({ title, one, pointer, actions, errors, schemas, onChange }: {
  title: string;
  one: string;
  pointer: string;
  actions: Step[] | undefined;
  errors: FieldError[];
  schemas: ConfigSchemas;
  onChange: (next: Step[] | undefined) => void;
}) {
  const [type, setType] = useState<StepType>("notification");
  const list = actions ?? [];
  const set = (next: Step[]) => onChange(next.length || actions !== undefined ? next : undefined);
  return (
    <fieldset className="actions" data-pointer={pointer}>
      <legend>{title}</legend>
      {list.map((a, i) => (
        <div key={i} className="action-form" role="group" aria-label={`${one} ${i + 1}: ${a.type}`}>
          <div className="row">
            <strong>
              {one} {i + 1} ({a.type})
            </strong>
            <button type="button" aria-label={`Move ${one.toLowerCase()} ${i + 1} up`} disabled={i === 0} onClick={() => set(move(list, i, i - 1))}>
              ↑
            </button>
            <button type="button" aria-label={`Remove ${one.toLowerCase()} ${i + 1}`} onClick={() => set(list.filter((_, j) => j !== i))}>
              ✕
            </button>
          </div>
          <StepForm step={a} pointer={`${pointer}/${i}`} prefix={`${one} ${i + 1}`} errors={errors} schemas={schemas} onChange={(next) => set(list.map((x, j) => (j === i ? next : x)))} />
        </div>
      ))}
      <div className="row">
        <label>
          New {one.toLowerCase()} type
          <select value={type} onChange={(e) => setType(e.target.value as StepType)}>
            {STEP_TYPES.map((t) => (
              <option key={t}>{t}</option>
            ))}
          </select>
        </label>
        <button type="button" onClick={() => set([...list, newStep(type, new Set(list.map((s) => s.name)))])}>
          Add {one.toLowerCase()}
        </button>
      </div>
      <FieldErrors errors={errors.filter((e) => e.pointer === pointer)} />
    </fieldset>
  );
}

function TransitionForm({ transition: t, states, pointer, errors, schemas, onChange }: {
  transition: MachineTransition;
  states: MachineState[];
  pointer: string;
  errors: FieldError[];
  schemas: ConfigSchemas;
  onChange: (next: MachineTransition) => void;
}) {
  const [actionType, setActionType] = useState<StepType>("notification");
  const names = states.map((s) => s.name);
  const stateSelect = (key: "from" | "to", label: string) => (
    <div className="field" data-pointer={`${pointer}/${key}`}>
      <label htmlFor={`transition-${key}`}>{label}</label>
      <select id={`transition-${key}`} value={t[key]} onChange={(e) => onChange({ ...t, [key]: e.target.value })}>
        {[...names, ...(names.includes(t[key]) ? [] : [t[key]])].map((n) => (
          <option key={n} value={n}>
            {n}
          </option>
        ))}
      </select>
      <FieldErrors errors={errorsAt(errors, `${pointer}/${key}`)} />
    </div>
  );
  const approval = t.requires_approval;
  const approvalSchema = schemas.approval;
  return (
    <Section title={`Transition ${t.from} → ${t.to}`}>
      <FieldErrors errors={errors.filter((e) => e.pointer === pointer)} />
      <div className="config-grid">
        {stateSelect("from", "From state")}
        {stateSelect("to", "To state")}
      </div>
      <div className="field" data-pointer={`${pointer}/description`}>
        <label htmlFor="transition-desc">Transition description</label>
        <input id="transition-desc" value={t.description ?? ""} onChange={(e) => onChange(withKey(t, "description", e.target.value || undefined))} />
      </div>
      <div className="field" data-pointer={`${pointer}/condition`}>
        <label htmlFor="transition-condition">Condition (guard: available only while it holds)</label>
        <input id="transition-condition" value={t.condition ?? ""} placeholder="trigger.amount <= 1000" onChange={(e) => onChange(withKey(t, "condition", e.target.value || undefined))} />
        <FieldErrors errors={errorsAt(errors, `${pointer}/condition`)} />
      </div>
      <div className="field" data-pointer={`${pointer}/automatic`}>
        <label className="check">
          <input type="checkbox" checked={t.automatic === true} onChange={(e) => onChange(withKey(t, "automatic", e.target.checked ? true : t.automatic === undefined ? undefined : false))} />
          Automatic (taken by the engine once the state's entry actions finished)
        </label>
        <FieldErrors errors={errorsAt(errors, `${pointer}/automatic`)} />
      </div>
      <TransitionTime t={t} pointer={pointer} errors={errors} onChange={onChange} />
      <div className="field" data-pointer={`${pointer}/roles`}>
        <span id="transition-roles">Allowed roles (who may request it; none: anyone who may act on instances)</span>
        <SchemaEditor schema={ROLES_SCHEMA} label="Allowed roles" value={t.roles} onChange={(v) => onChange(withKey(t, "roles", v))} />
        <FieldErrors errors={errorsAt(errors, `${pointer}/roles`)} />
      </div>
      <fieldset data-pointer={`${pointer}/requires_approval`}>
        <legend>Approval</legend>
        <label className="check">
          <input type="checkbox" checked={approval !== undefined} onChange={(e) => onChange(withKey(t, "requires_approval", e.target.checked ? {} : undefined))} />
          Requires approval
        </label>
        {approval !== undefined && (
          <div className="config-grid">
            {FIELDS.approval
              .filter((f) => f.key !== "on_reject")
              .map((f) => {
                const at = `${pointer}/requires_approval/${f.key}`;
                return (
                  <FieldEditor
                    key={f.key}
                    field={f}
                    pointer={at}
                    value={approval[f.key]}
                    onChange={(v) => onChange({ ...t, requires_approval: withKey(approval, f.key, v) })}
                    steps={[]}
                    current={0}
                    errors={errorsAt(errors, at)}
                    schema={approvalSchema?.properties?.[f.key]}
                  />
                );
              })}
          </div>
        )}
        <FieldErrors errors={errors.filter((e) => e.pointer === `${pointer}/requires_approval`)} />
      </fieldset>
      <fieldset data-pointer={`${pointer}/action`}>
        <legend>Action on the way</legend>
        {t.action ? (
          <div className="action-form" role="group" aria-label={`Transition action: ${t.action.type}`}>
            <button type="button" onClick={() => onChange(withKey(t, "action", undefined))}>
              Remove transition action
            </button>
            <StepForm step={t.action} pointer={`${pointer}/action`} prefix="Transition action" errors={errors} schemas={schemas} onChange={(next) => onChange({ ...t, action: next })} />
          </div>
        ) : (
          <div className="row">
            <label>
              Transition action type
              <select value={actionType} onChange={(e) => setActionType(e.target.value as StepType)}>
                {STEP_TYPES.map((x) => (
                  <option key={x}>{x}</option>
                ))}
              </select>
            </label>
            <button type="button" onClick={() => onChange({ ...t, action: newStep(actionType, new Set()) })}>
              Add transition action
            </button>
          </div>
        )}
      </fieldset>
    </Section>
  );
}

/** A transition's time (core/machine.py): none, a delay after entering the source state (seconds, minutes or
 * hours), or a deadline (ISO 8601, epoch milliseconds or a placeholder such as {{trigger.review_by}}). Either
 * makes the transition automatic: the engine arms a timer on entering the state. */
function TransitionTime({ t, pointer, errors, onChange }: { t: MachineTransition; pointer: string; errors: FieldError[]; onChange: (t: MachineTransition) => void }) {
  const timing = timingOf(t);
  const keyPointers = [...AFTER_UNITS.map((u) => `${pointer}/after_${u}`), `${pointer}/at`];
  return (
    <fieldset className="transition-time" data-pointer={`${pointer}/time`}>
      <legend>Time</legend>
      <div className="field">
        <label htmlFor="transition-time-kind">Takes effect</label>
        <select
          id="transition-time-kind"
          value={timing.kind}
          onChange={(e) => {
            const kind = e.target.value as Timing["kind"];
            onChange(withTiming(t, kind === "after" ? { kind, amount: 1, unit: "hours" } : kind === "at" ? { kind, at: "" } : { kind }));
          }}
        >
          <option value="none">when requested (or automatically, as set above)</option>
          <option value="after">after a time in the source state</option>
          <option value="at">at a deadline</option>
        </select>
      </div>
      {timing.kind === "after" && (
        <div className="config-grid">
          <div className="field">
            <label htmlFor="transition-time-delay">Delay</label>
            <input
              id="transition-time-delay"
              type="number"
              min={0}
              step="any"
              value={timing.amount ?? ""}
              onChange={(e) => onChange(withTiming(t, { ...timing, amount: e.target.value === "" ? undefined : Number(e.target.value) }))}
            />
          </div>
          <div className="field">
            <label htmlFor="transition-time-unit">Unit</label>
            <select id="transition-time-unit" value={timing.unit} onChange={(e) => onChange(withTiming(t, { ...timing, unit: e.target.value as AfterUnit }))}>
              {AFTER_UNITS.map((u) => (
                <option key={u}>{u}</option>
              ))}
            </select>
          </div>
        </div>
      )}
      {timing.kind === "at" && (
        <div className="field">
          <label htmlFor="transition-time-at">Deadline</label>
          <input id="transition-time-at" value={timing.at} placeholder="{{trigger.review_by}} or 2026-12-31T17:00:00Z" onChange={(e) => onChange(withTiming(t, { kind: "at", at: e.target.value }))} />
        </div>
      )}
      <FieldErrors errors={errors.filter((e) => keyPointers.some((k) => e.pointer === k || e.pointer.startsWith(`${k}/`)))} />
    </fieldset>
  );
}
