// The read-only xyflow canvas both graphs draw on (a template's steps, a state machine's states): laid out
// by the caller (dagre), so nodes are neither dragged nor connected here; remounted when the node set
// changes so that fitView frames the new graph.
import { Background, Controls, ReactFlow, type Edge, type Node } from "@xyflow/react";

type Props = { nodes: Node[]; edges: Edge[]; label: string };

export function GraphCanvas({ nodes, edges, label }: Props) {
  return (
    <div className="graph" aria-label={label} role="figure">
      <ReactFlow
        key={nodes.map((n) => n.id).join(",")}
        fitViewOptions={{ maxZoom: 1.2 }}
        nodes={nodes}
        edges={edges}
        fitView
        nodesDraggable={false}
        nodesConnectable={false}
        proOptions={{ hideAttribution: true }}
        minZoom={0.2}
      >
        <Background />
        <Controls showInteractive={false} />
      </ReactFlow>
    </div>
  );
}
