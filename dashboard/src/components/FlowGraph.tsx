// The template drawn as a graph (xyflow, laid out by dagre): steps, condition branches, skip_to jumps,
// rejections, loops. Used by the builder (updates as you edit) and the instance page (current step and
// the path taken highlighted).
import dagre from "@dagrejs/dagre";
import { MarkerType, type Edge, type Node } from "@xyflow/react";
import { useMemo } from "react";
import { GraphCanvas } from "./GraphCanvas";
import { arrows, type Step } from "../builder/model";

/** `path`: the step numbers in the order the instance entered them (0 = it ended), from its timeline. */
type Props = { steps: Step[]; current?: number | null; path?: number[]; label?: string };

const W = 190;
const H = 54;

export function FlowGraph({ steps, current, path, label = "Template graph" }: Props) {
  const { nodes, edges } = useMemo(() => layout(steps, current ?? null, path ?? []), [steps, current, path]);
  return <GraphCanvas nodes={nodes} edges={edges} label={label} />;
}

function layout(steps: Step[], current: number | null, path: number[]): { nodes: Node[]; edges: Edge[] } {
  const all = arrows(steps);
  const visited = new Set(path);
  const ids_ = (n: number) => (n === 0 ? "done" : `s${n}`);
  const taken = new Set(path.map((n, i) => (i === 0 ? `start>${ids_(n)}` : `${ids_(path[i - 1] ?? 0)}>${ids_(n)}`)));
  const g = new dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: "TB", nodesep: 40, ranksep: 50 });
  g.setDefaultEdgeLabel(() => ({}));
  const ids = ["start", ...steps.map((_, i) => `s${i + 1}`)];
  for (const end of ["done", "failed"]) if (all.some((a) => a.to === end)) ids.push(end);
  ids.forEach((id) => g.setNode(id, { width: W, height: H }));
  all.forEach((a, i) => g.setEdge(a.from, a.to, {}, `e${i}`));
  dagre.layout(g);
  const nodes: Node[] = ids.map((id) => {
    const pos = g.node(id);
    const n = id.startsWith("s") ? Number(id.slice(1)) : 0;
    const step = steps[n - 1];
    const text = step ? `${n}. ${step.name}` : id === "start" ? "start" : id === "done" ? "completed" : "failed";
    const classes = ["flow-node", step ? `type-${step.type}` : `end-${id}`];
    if (n && n === current) classes.push("current");
    else if (n && visited.has(n)) classes.push("visited");
    return {
      id,
      position: { x: (pos?.x ?? 0) - W / 2, y: (pos?.y ?? 0) - H / 2 },
      data: { label: step ? `${text} (${step.type})` : text },
      className: classes.join(" "),
      ariaLabel: step ? `Step ${n}, ${step.type}: ${step.name}${n === current ? " (current)" : ""}` : text,
      style: { width: W },
    };
  });
  const edges: Edge[] = all.map((a, i) => {
    const onPath = taken.has(`${a.from}>${a.to}`);
    return {
      id: `e${i}`,
      source: a.from,
      target: a.to,
      label: a.label,
      animated: onPath,
      markerEnd: { type: MarkerType.ArrowClosed },
      style: a.kind === "reject" ? { strokeDasharray: "5 4", stroke: "#b42318" } : onPath ? { stroke: "#1d4ed8", strokeWidth: 2 } : undefined,
    };
  });
  return { nodes, edges };
}
