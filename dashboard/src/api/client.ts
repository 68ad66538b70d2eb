// The one way the dashboard talks to the gateway: openapi-fetch typed by the generated schema.d.ts
// (regenerated from gateway/openapi.py and diffed by tests/browser/test_dashboard_build.py).
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Problem = Schemas["Problem"];

const TOKEN_KEY = "flowline.token";

export const session = {
  token: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  signIn: (token: string) => sessionStorage.setItem(TOKEN_KEY, token),
  signOut: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** A Problem document (RFC 7807) as an Error, so queries and mutations can show its detail and pointers. */
export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail);
  }
  get status(): number {
    return this.problem.status;
  }
}

const auth: Middleware = {
  onRequest({ request }) {
    const token = session.token();
    if (token) request.headers.set("Authorization", `Bearer ${token}`);
    return request;
  },
};

export const api = createClient<paths>({ baseUrl: window.location.origin });
api.use(auth);

/** Unwrap an openapi-fetch result: the data, or an ApiError carrying the server's Problem. */
export async function must<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, error, response } = await call;
  if (error !== undefined || data === undefined) {
    const problem = (error ?? {}) as Partial<Problem>;
    throw new ApiError({
      type: problem.type ?? "about:blank",
      title: problem.title ?? response.statusText,
      status: problem.status ?? response.status,
      detail: problem.detail ?? `${response.status} ${response.statusText}`,
      ...(problem.errors ? { errors: problem.errors } : {}),
    });
  }
  return data;
}

/** One Idempotency-Key per click: a retried click is not a second decision. */
export const idempotencyKey = (): string => crypto.randomUUID();
