/**
 * Fault injection for the test suite: a named point fails when CERT_RETRIEVER_TEST_FAULT names it
 * (`store:staged` throws there; `kill:after-submit-csr` kills the process with SIGKILL there), so
 * tests can prove that a failure or a crash at that point loses nothing. Inert otherwise.
 */
export function faultPoint(name: string): void {
  const fault = process.env.CERT_RETRIEVER_TEST_FAULT;
  if (!fault) return;
  if (fault === name) throw new Error(`injected fault at ${name}`);
  if (fault === `kill:${name}`) process.kill(process.pid, "SIGKILL");
}
