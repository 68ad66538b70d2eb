// Who is signed in: the bearer token (sessionStorage, so it ends with the tab) and GET /v1/me.
import { createContext, useContext } from "react";
import type { Schemas } from "./api/client";

export type Me = Schemas["Me"];

export const MeContext = createContext<Me | null>(null);

export function useSignedIn(): Me {
  const me = useContext(MeContext);
  if (!me) throw new Error("useSignedIn outside a signed-in page");
  return me;
}

/** What the server would refuse is not offered; the reason is shown instead (STYLE: "roles show"). */
export function can(me: Me, permission: string): boolean {
  return me.permissions.includes(permission);
}

export function refusal(me: Me, what: string): string {
  return `${me.display_name || me.id} (${me.roles.join(", ") || "no roles"}) may not ${what}`;
}
