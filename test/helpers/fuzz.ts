/**
 * How many cases each property runs, and from which seed: CERT_RETRIEVER_FUZZ_RUNS (default 1000,
 * as CI runs them; `npm run test:long` runs 10,000) from CERT_RETRIEVER_FUZZ_SEED, or a new seed,
 * printed so that a failure can be repeated.
 */
export function fuzzRuns(what: string): { numRuns: number; seed: number } {
  const numRuns = Number(process.env.CERT_RETRIEVER_FUZZ_RUNS ?? 1000);
  const seed = Number(process.env.CERT_RETRIEVER_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`${what}: ${numRuns} runs each, seed ${seed} (CERT_RETRIEVER_FUZZ_SEED=${seed} repeats them)`);
  return { numRuns, seed };
}
