// State changes: commands with ?wait=true (read your writes) and one Idempotency-Key per click, then
// the keys that show the change are invalidated.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api, idempotencyKey, must } from "./client";
import { keys } from "./queries";

export type Decision = "approve" | "reject";
export type Operation = "pause" | "resume" | "cancel" | "retry" | "escalate" | "advance";

export function useDecide() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: ({ id, step, decision, reasoning }: { id: string; step: number; decision: Decision; reasoning: string }) => {
      const params = { path: { id, n: step }, query: { wait: true }, header: { "Idempotency-Key": idempotencyKey() } };
      const body = { reasoning };
      return decision === "approve"
        ? must(api.POST("/v1/workflows/instances/{id}/steps/{n}/approve", { params, body }))
        : must(api.POST("/v1/workflows/instances/{id}/steps/{n}/reject", { params, body }));
    },
    onSettled: (_d, _e, v) => {
      void qc.invalidateQueries({ queryKey: keys.pending });
      void qc.invalidateQueries({ queryKey: keys.instance(v.id) });
    },
  });
}

export function useOperate() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: ({ id, op, step, reason }: { id: string; op: Operation; step?: number; reason: string }) => {
      const header = { "Idempotency-Key": idempotencyKey() };
      const query = { wait: true };
      switch (op) {
        case "pause":
          return must(api.POST("/v1/workflows/instances/{id}/pause", { params: { path: { id }, query, header }, body: { reason } }));
        case "cancel":
          return must(api.POST("/v1/workflows/instances/{id}/cancel", { params: { path: { id }, query, header }, body: { reason } }));
        case "resume":
          return must(api.POST("/v1/workflows/instances/{id}/resume", { params: { path: { id }, query, header }, body: {} }));
        case "advance":
          return must(api.POST("/v1/workflows/instances/{id}/advance", { params: { path: { id }, query, header }, body: { action: "proceed_if_ready" } }));
        case "retry":
          return must(api.POST("/v1/workflows/instances/{id}/steps/{n}/retry", { params: { path: { id, n: step ?? 1 }, query, header }, body: {} }));
        case "escalate": // to the template's escalation target: the caller never chooses who decides next
          return must(
            api.POST("/v1/workflows/instances/{id}/steps/{n}/escalate", { params: { path: { id, n: step ?? 1 }, query, header }, body: { reason } }),
          );
      }
    },
    onSettled: (_d, _e, v) => {
      void qc.invalidateQueries({ queryKey: ["instances"] });
      void qc.invalidateQueries({ queryKey: ["templates"] });
      void qc.invalidateQueries({ queryKey: keys.pending });
      void qc.invalidateQueries({ queryKey: keys.instance(v.id) });
    },
  });
}
