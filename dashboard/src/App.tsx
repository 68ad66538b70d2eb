import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, Route, Switch, useLocation } from "wouter";
import { ApiError, session } from "./api/client";
import { useMe } from "./api/queries";
import { MeContext } from "./auth";
import { Analytics } from "./routes/Analytics";
import { Approvals } from "./routes/Approvals";
import { InstancePage } from "./routes/Instance";
import { Instances } from "./routes/Instances";
import { Pipelines } from "./routes/Pipelines";
import { Security } from "./routes/Security";
import { SignIn } from "./routes/SignIn";
import { StartInstance } from "./routes/Start";
import { TemplateBuilder } from "./routes/Builder";
import { Templates } from "./routes/Templates";

const TABS = [
  ["/", "Approvals"],
  ["/instances", "Active workflows"],
  ["/pipelines", "Pipelines"],
  ["/templates", "Templates"],
  ["/analytics", "Analytics"],
] as const;
/** Shown to those who may read either log (admins); the page explains what each other principal lacks. */
const ADMIN_TABS = [["/security", "Security"]] as const;

export function App() {
  const [token, setToken] = useState(session.token());
  const me = useMe(token !== null);
  const queryClient = useQueryClient();
  const [location] = useLocation();

  const signOut = () => {
    session.signOut();
    queryClient.clear();
    setToken(null);
  };

  if (token === null || (me.error instanceof ApiError && me.error.status === 401)) {
    const rejected = token !== null ? "That token is unknown or revoked." : undefined;
    return (
      <SignIn
        error={rejected}
        onSignIn={(t) => {
          session.signIn(t);
          queryClient.clear();
          setToken(t);
        }}
      />
    );
  }
  if (!me.data) return <p role="status">{me.error ? me.error.message : "Signing in…"}</p>;

  const current = (href: string) => (href === "/" ? location === "/" : location.startsWith(href));
  return (
    <MeContext.Provider value={me.data}>
      <header className="top">
        <strong className="brand">Flowline</strong>
        <nav aria-label="Main">
          {[...TABS, ...ADMIN_TABS.filter(() => me.data.permissions.includes("audit:read") || me.data.permissions.includes("agents:write"))].map(([href, label]) => (
            <Link key={href} href={href} aria-current={current(href) ? "page" : undefined}>
              {label}
            </Link>
          ))}
        </nav>
        <span className="who" data-testid="who">
          {me.data.display_name || me.data.id} · {me.data.roles.join(", ") || me.data.kind} · tenant {me.data.tenant_id}
        </span>
        <button type="button" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main>
        <Switch>
          <Route path="/" component={Approvals} />
          <Route path="/instances" component={Instances} />
          <Route path="/instances/:id">{(p) => <InstancePage id={p.id} />}</Route>
          <Route path="/pipelines" component={Pipelines} />
          <Route path="/templates" component={Templates} />
          <Route path="/templates/new">{() => <TemplateBuilder />}</Route>
          <Route path="/templates/:id/start">{(p) => <StartInstance id={p.id} />}</Route>
          <Route path="/templates/:id/:version">
            {(p) => <TemplateBuilder id={p.id} version={Number(p.version)} />}
          </Route>
          <Route path="/analytics" component={Analytics} />
          <Route path="/security" component={Security} />
          <Route>
            <h1>Not found</h1>
            <p>There is no page at {location}.</p>
          </Route>
        </Switch>
      </main>
    </MeContext.Provider>
  );
}
