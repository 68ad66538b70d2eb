// A state-machine template drawn as a graph (xyflow, laid out by dagre): states as nodes (terminal ones
// marked with the status they end in), transitions as labelled edges, the initial state entered from
// "start". Used by the builder (redrawn as you edit).
import dagre from "@dagrejs/dagre";
import { MarkerType, type Edge, type Node } from "@xyflow/react";
import { useMemo } from "react";
import { GraphCanvas } from "./GraphCanvas";
import { transitionLabel, transitionTag, type MachineState, type MachineTransition } from "../builder/model";

/** `current`: the state to highlight, called `mark` in its label ("selected" in the builder, "current" on an instance). */
type Props = { states: MachineState[]; transitions: MachineTransition[]; current?: string | null; mark?: string; label?: string };

const W = 190;
const H = 54;

export function MachineGraph({ states, transitions, current, mark = "selected", label = "State machine graph" }: Props) {
  const { nodes, edges } = useMemo(() => layout(states, transitions, current ?? null, mark), [states, transitions, current, mark]);
  return <GraphCanvas nodes={nodes} edges={edges} label={label} />;
}

const terminalOf = (s: MachineState): string | null => (typeof s.terminal === "string" ? s.terminal : s.terminal === true ? "COMPLETED" : null);

function layout(states: MachineState[], transitions: MachineTransition[], current: string | null, mark: string): { nodes: Node[]; edges: Edge[] } {
  const g = new dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: "TB", nodesep: 60, ranksep: 70 });
  g.setDefaultEdgeLabel(() => ({}));
  const known = new Set(states.map((s) => s.name));
  const id = (name: string) => `state:${name}`;
  g.setNode("start", { width: W, height: H });
  states.forEach((s) => g.setNode(id(s.name), { width: W, height: H }));
  const drawn = transitions.filter((t) => known.has(t.from) && known.has(t.to));
  const first = states[0];
  if (first) g.setEdge("start", id(first.name), {}, "initial");
  drawn.forEach((t, i) => g.setEdge(id(t.from), id(t.to), {}, `t${i}`));
  dagre.layout(g);
  const nodes: Node[] = [
    { id: "start", position: { x: (g.node("start")?.x ?? 0) - W / 2, y: (g.node("start")?.y ?? 0) - H / 2 }, data: { label: "start" }, className: "flow-node end-start", ariaLabel: "start", style: { width: W } },
    ...states.map((s): Node => {
      const pos = g.node(id(s.name));
      const end = terminalOf(s);
      const classes = ["flow-node", end ? (end === "COMPLETED" ? "end-done" : "end-failed") : "type-state"];
      if (s.name === current) classes.push("current");
      return {
        id: id(s.name),
        position: { x: (pos?.x ?? 0) - W / 2, y: (pos?.y ?? 0) - H / 2 },
        data: { label: end ? `${s.name} (${end})` : s.name },
        className: classes.join(" "),
        ariaLabel: `State ${s.name}${end ? `, ends ${end}` : ""}${s.name === current ? ` (${mark})` : ""}`,
        style: { width: W },
      };
    }),
  ];
  const edges: Edge[] = [
    ...(first ? [{ id: "initial", source: "start", target: id(first.name), ariaLabel: `Initial state: ${first.name}`, markerEnd: { type: MarkerType.ArrowClosed } }] : []),
    ...drawn.map((t, i): Edge => ({
      id: `t${i}`,
      source: id(t.from),
      target: id(t.to),
      label: transitionTag(t),
      ariaLabel: `Transition ${t.from} to ${t.to}: ${transitionLabel(t)}`,
      animated: Boolean(t.automatic),
      markerEnd: { type: MarkerType.ArrowClosed },
      style: t.requires_approval ? { stroke: "#1d4ed8", strokeWidth: 2 } : undefined,
    })),
  ];
  return { nodes, edges };
}
