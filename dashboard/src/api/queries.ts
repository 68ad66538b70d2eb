// Query hooks and their keys (one home for every key, so mutations can invalidate the right ones).
import { useInfiniteQuery, useQuery } from "@tanstack/react-query";
import { api, must, type Schemas } from "./client";

export const keys = {
  me: ["me"] as const,
  pending: ["pending"] as const,
  decisions: ["pending", "decisions"] as const,
  instances: (filters: InstanceFilters) => ["instances", "list", filters] as const,
  instance: (id: string) => ["instances", id] as const,
  actions: (id: string) => ["instances", id, "actions"] as const,
  templates: ["templates"] as const,
  template: (id: string, version?: number) => ["templates", id, version ?? "current"] as const,
  analytics: (templateId?: string) => ["analytics", templateId ?? "all"] as const,
  throughput: (templateId: string | undefined, bucket: "hour" | "day") => ["analytics", "throughput", templateId ?? "all", bucket] as const,
  pipeline: (id: string) => ["templates", id, "pipeline"] as const,
  stepTypes: ["step-types"] as const,
  securityLog: ["security-log"] as const,
  agents: ["agents"] as const,
  accessLog: (agentId: string) => ["agents", agentId, "access-log"] as const,
};

export type InstanceFilters = {
  status?: Schemas["Instance"]["status"];
  template_id?: string;
  created_after?: string;
  blocked_on?: "me";
};

/** Live views poll: 3 s while something can still change (docs/adr/0008-dashboard-front-end.md). */
export const POLL_MS = 3000;
const RUNNING = new Set(["ACTIVE", "PAUSED"]);

export const useMe = (enabled: boolean) =>
  useQuery({ queryKey: keys.me, enabled, retry: false, queryFn: () => must(api.GET("/v1/me")) });

/** The most rows the API returns per page; "Load more" follows its `next_cursor` for the rest. */
export const PAGE = 200;
const cursorPages = {
  initialPageParam: undefined as string | undefined,
  getNextPageParam: (last: { next_cursor: string | null }) => last.next_cursor ?? undefined,
};
const at = (cursor: string | undefined) => (cursor ? { cursor } : {});

export const usePending = () =>
  useInfiniteQuery({
    ...cursorPages,
    queryKey: keys.pending,
    refetchInterval: POLL_MS,
    queryFn: ({ pageParam }) =>
      must(api.GET("/v1/workflows/pending", { params: { query: { sort: "deadline", limit: PAGE, ...at(pageParam) } } })),
  });

export const useInstances = (filters: InstanceFilters) =>
  useInfiniteQuery({
    ...cursorPages,
    queryKey: keys.instances(filters),
    refetchInterval: POLL_MS,
    queryFn: ({ pageParam }) =>
      must(api.GET("/v1/workflows/instances", { params: { query: { ...filters, limit: PAGE, ...at(pageParam) } } })),
  });

export const useInstance = (id: string) =>
  useQuery({
    queryKey: keys.instance(id),
    retry: false,
    refetchInterval: (query) => (RUNNING.has(query.state.data?.status ?? "ACTIVE") ? POLL_MS : false),
    queryFn: () => must(api.GET("/v1/workflows/instances/{id}", { params: { path: { id } } })),
  });

export const useActions = (id: string, status?: string) =>
  useQuery({
    queryKey: [...keys.actions(id), status],
    enabled: status !== undefined,
    queryFn: () => must(api.GET("/v1/workflows/instances/{id}/agent-actions", { params: { path: { id } } })),
  });

export const useTemplates = () =>
  useInfiniteQuery({
    ...cursorPages,
    queryKey: keys.templates,
    queryFn: ({ pageParam }) => must(api.GET("/v1/workflows/templates", { params: { query: { limit: PAGE, ...at(pageParam) } } })),
  });

export const useTemplate = (id: string | undefined, version?: number) =>
  useQuery({
    queryKey: keys.template(id ?? "", version),
    enabled: id !== undefined,
    queryFn: () =>
      must(
        api.GET("/v1/workflows/templates/{id}", {
          params: { path: { id: id ?? "" }, query: version ? { version } : {} },
        }),
      ),
  });

export const useAnalytics = (templateId?: string) =>
  useQuery({
    queryKey: keys.analytics(templateId),
    refetchInterval: POLL_MS * 5,
    queryFn: () =>
      must(api.GET("/v1/workflows/analytics", { params: { query: templateId ? { template_id: templateId } : {} } })),
  });

export const useThroughput = (templateId: string | undefined, bucket: "hour" | "day") =>
  useQuery({
    queryKey: keys.throughput(templateId, bucket),
    refetchInterval: POLL_MS * 5,
    queryFn: () =>
      must(
        api.GET("/v1/workflows/analytics/throughput", {
          params: { query: { bucket, periods: bucket === "hour" ? 48 : 30, ...(templateId ? { template_id: templateId } : {}) } },
        }),
      ),
  });

export const usePipeline = (id: string | undefined) =>
  useQuery({
    queryKey: keys.pipeline(id ?? ""),
    enabled: id !== undefined,
    refetchInterval: POLL_MS,
    queryFn: () => must(api.GET("/v1/workflows/templates/{id}/pipeline", { params: { path: { id: id ?? "" } } })),
  });

export const useMyDecisions = () =>
  useQuery({
    queryKey: keys.decisions,
    queryFn: () => must(api.GET("/v1/workflows/decisions", { params: { query: { limit: 20 } } })),
  });

/** Each step type's config schema (core/steps/), from which the builder draws its nested forms. */
export const useStepTypes = () =>
  useQuery({
    queryKey: keys.stepTypes,
    staleTime: Infinity,
    queryFn: () => must(api.GET("/v1/workflows/step-types")),
  });

export const useSecurityLog = () =>
  useInfiniteQuery({
    ...cursorPages,
    queryKey: keys.securityLog,
    refetchInterval: POLL_MS,
    queryFn: ({ pageParam }) => must(api.GET("/v1/security-log", { params: { query: { limit: PAGE, ...at(pageParam) } } })),
  });

export const useAgents = () =>
  useInfiniteQuery({
    ...cursorPages,
    queryKey: keys.agents,
    queryFn: ({ pageParam }) => must(api.GET("/v1/agents", { params: { query: { limit: PAGE, ...at(pageParam) } } })),
  });

export const useAccessLog = (agentId: string | undefined) =>
  useInfiniteQuery({
    ...cursorPages,
    queryKey: keys.accessLog(agentId ?? ""),
    enabled: agentId !== undefined,
    refetchInterval: POLL_MS,
    queryFn: ({ pageParam }) =>
      must(
        api.GET("/v1/agents/{id}/access-log", {
          params: { path: { id: agentId ?? "" }, query: { limit: PAGE, ...at(pageParam) } },
        }),
      ),
  });
