// The CLI as a test runs it to prove that a failure or a crash at one point of a run loses
// nothing: `node fault-cli.mjs FAULT ARGS...` runs `cert-retriever ARGS` in this process (the
// TypeScript build) with the fault injected through what the CLI hands its agents: the credential
// store's write observer and the run's events. The product reads no test variable.
//   FAULT: POINT (throw there: "injected fault at POINT") or kill:POINT (SIGKILL there), where POINT is
//   after-<step> (an enroll step done), store:<point> (the files store's write) or keychain:<point>.
import { main } from "../../dist/cli/main.js";

const [fault, ...argv] = process.argv.slice(2);
const kill = fault.startsWith("kill:");
const point = kill ? fault.slice("kill:".length) : fault;
const strike = () => {
  if (kill) process.kill(process.pid, "SIGKILL");
  throw new Error(`injected fault at ${point}`);
};
const step = point.startsWith("after-") ? point.slice("after-".length) : undefined;
const write = step === undefined ? point.slice(point.indexOf(":") + 1) : undefined;

process.exitCode = await main(argv, {
  observer: (at) => at === write && strike(),
  onEvent: (event) => event.type === "step" && event.step === step && strike(),
});
