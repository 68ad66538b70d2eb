// A template's secrets: names only (the API never returns a value); a value is written once and cleared.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { api, idempotencyKey, must } from "../api/client";
import { ErrorNote, relative } from "./common";

export function Secrets({ id }: { id: string }) {
  const qc = useQueryClient();
  const key = ["templates", id, "secrets"];
  const list = useQuery({ queryKey: key, queryFn: () => must(api.GET("/v1/workflows/templates/{id}/secrets", { params: { path: { id } } })) });
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const save = useMutation({
    mutationFn: () =>
      must(api.POST("/v1/workflows/templates/{id}/secrets", { params: { path: { id }, header: { "Idempotency-Key": idempotencyKey() } }, body: { name, value } })),
    onSuccess: () => {
      setValue("");
      setName("");
      void qc.invalidateQueries({ queryKey: key });
    },
  });
  return (
    <section aria-label="Secrets">
      <h2>Secrets</h2>
      <p className="muted">Use as {"{{secrets.NAME}}"}; values are stored encrypted and never shown again.</p>
      <ul>
        {list.data?.items.map((s) => (
          <li key={s.name}>
            <code>{s.name}</code> <span className="muted">set {relative(s.updated_at)}</span>
          </li>
        ))}
      </ul>
      <form
        className="row"
        onSubmit={(e) => {
          e.preventDefault();
          save.mutate();
        }}
      >
        <label>
          Secret name <input value={name} onChange={(e) => setName(e.target.value)} required pattern="[A-Za-z_][A-Za-z0-9_]*" />
        </label>
        <label>
          Secret value <input type="password" autoComplete="off" value={value} onChange={(e) => setValue(e.target.value)} required />
        </label>
        <button type="submit" disabled={save.isPending}>
          Store secret
        </button>
      </form>
      <ErrorNote error={save.error ?? list.error} />
    </section>
  );
}
