import { useState } from "react";

export function SignIn({ onSignIn, error }: { onSignIn: (token: string) => void; error?: string }) {
  const [token, setToken] = useState("");
  return (
    <main className="signin">
      <h1>Flowline</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) onSignIn(token.trim());
        }}
      >
        <label htmlFor="token">API token</label>
        <input
          id="token"
          type="password"
          autoComplete="off"
          value={token}
          onChange={(e) => setToken(e.target.value)}
          placeholder="fl_…"
        />
        <button type="submit">Sign in</button>
        {error && <p role="alert" className="error">{error}</p>}
        <p className="hint">Development tokens are printed by <code>deploy/stack up</code>.</p>
      </form>
    </main>
  );
}
