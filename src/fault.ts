/**
 * Fault injection for the test suite: a named point throws when CERT_RETRIEVER_TEST_FAULT names
 * it, so tests can prove that a failure in the middle of a write loses nothing. Inert otherwise.
 */
export function faultPoint(name: string): void {
  if (process.env.CERT_RETRIEVER_TEST_FAULT === name) {
    throw new Error(`injected fault at ${name}`);
  }
}
