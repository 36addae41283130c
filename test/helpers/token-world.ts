import { startCsrRecordingLab, type TestLab } from "./lab.js";
import { startBroker, type TestBroker } from "./mosquitto.js";

/** What a token test runs against: the lab behind a CSR-recording proxy, a mosquitto trusting the lab's CA, and the token. */
export interface TokenWorld<T> {
  lab: TestLab;
  /** The proxy's URL: the platform the CLI is given. */
  url: string;
  /** The CSRs sent, as PEM, newest last. */
  csrs: string[];
  broker: TestBroker;
  token: T;
  stop(): Promise<void>;
}

/** Starts a token world with the token `makeToken` makes; stop() ends all of it. */
export async function startTokenWorld<T extends { stop(): Promise<void> }>(
  makeToken: () => Promise<T>,
): Promise<TokenWorld<T>> {
  const recording = await startCsrRecordingLab();
  const parts: Array<{ stop(): Promise<void> }> = [recording];
  try {
    const token = await makeToken();
    parts.push(token);
    const broker = await startBroker(recording.lab.dir, { api: "x509" });
    parts.push(broker);
    return { lab: recording.lab, url: recording.url, csrs: recording.csrs, broker, token, stop: () => stopAll(parts) };
  } catch (err) {
    await stopAll(parts);
    throw err;
  }
}

async function stopAll(parts: Array<{ stop(): Promise<void> }>): Promise<void> {
  for (const part of parts.reverse()) await part.stop();
}
