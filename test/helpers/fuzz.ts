/**
 * How many cases each property runs, and from which seed: CERT_RETRIEVER_FUZZ_RUNS (default 1000,
 * as CI runs them; `npm run test:long` runs 10,000) from CERT_RETRIEVER_FUZZ_SEED, or a new seed,
 * printed so that a failure can be repeated.
 */
export function fuzzRuns(what: string): { numRuns: number; seed: number } {
  const numRuns = whole("CERT_RETRIEVER_FUZZ_RUNS", 1000);
  const seed = whole("CERT_RETRIEVER_FUZZ_SEED", Math.floor(Math.random() * 2 ** 31));
  // Zero runs would pass every property without trying one.
  if (numRuns < 1) throw new Error("CERT_RETRIEVER_FUZZ_RUNS must be at least 1");
  console.log(`${what}: ${numRuns} runs each, seed ${seed} (CERT_RETRIEVER_FUZZ_SEED=${seed} repeats them)`);
  return { numRuns, seed };
}

/** A variable's value as a whole number, else `fallback` where it is unset; anything else is refused. */
function whole(name: string, fallback: number): number {
  const value = process.env[name];
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) throw new Error(`${name} must be a whole number, not '${value}'`);
  return Number(value);
}
