/** Signing in to the Supabase project the hub uses: email and password, or an emailed code. */
import { useState } from "preact/hooks";
import type { SupabaseClient } from "@supabase/supabase-js";

export function SignIn({ client, projectHost }: { client: SupabaseClient; projectHost: string }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [codeSent, setCodeSent] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");

  async function withPassword(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError("");
    const { error } = await client.auth.signInWithPassword({ email, password });
    setBusy(false);
    if (error) setError(`could not sign in: ${error.message}`);
  }

  async function sendCode() {
    setBusy(true);
    setError("");
    const { error } = await client.auth.signInWithOtp({
      email,
      options: { shouldCreateUser: false },
    });
    setBusy(false);
    if (error) setError(`could not send a code: ${error.message}`);
    else setCodeSent(true);
  }

  async function withCode(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError("");
    const { error } = await client.auth.verifyOtp({ email, token: code.trim(), type: "email" });
    setBusy(false);
    if (error) setError(`that code did not work: ${error.message}`);
  }

  return (
    <section class="card" aria-labelledby="signin-title">
      <h2 id="signin-title">Sign in</h2>
      <p class="muted">
        With the account your hub uses on <strong>{projectHost}</strong> (the one of{" "}
        <code>helix-hub cloud login</code>).
      </p>
      <form onSubmit={codeSent ? withCode : withPassword}>
        <label>
          Email
          <input
            type="email"
            name="email"
            autocomplete="username"
            required
            value={email}
            onInput={(e) => setEmail(e.currentTarget.value)}
          />
        </label>
        {codeSent ? (
          <label>
            Code from the email
            <input
              name="code"
              inputMode="numeric"
              autocomplete="one-time-code"
              required
              value={code}
              onInput={(e) => setCode(e.currentTarget.value)}
            />
          </label>
        ) : (
          <label>
            Password
            <input
              type="password"
              name="password"
              autocomplete="current-password"
              value={password}
              onInput={(e) => setPassword(e.currentTarget.value)}
            />
          </label>
        )}
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <div class="row">
          <button type="submit" disabled={busy || (!codeSent && password === "")}>
            {codeSent ? "Sign in with the code" : "Sign in"}
          </button>
          {!codeSent && (
            <button type="button" class="secondary" disabled={busy || email === ""} onClick={sendCode}>
              Email me a code
            </button>
          )}
        </div>
      </form>
    </section>
  );
}
