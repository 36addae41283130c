/**
 * How requests come into the lab: bodies read side by side, then handled one at a time; and,
 * where the lab is bounded, how many connections it keeps and how many request bytes it holds.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";

/** Bounds on what clients can make the lab hold; past one, a request is answered 503 and its connection closed. */
export interface LabLimits {
  /** Connections open at once, in all. */
  connections: number;
  /** Connections open at once from one address. */
  perAddress: number;
  /** Request body bytes held at once, over every request being read or waiting its turn. */
  bufferedBytes: number;
}

/**
 * The bounds of a lab that listens beyond loopback: a few hundred devices at once, and 32 MiB of
 * bodies (128 of the largest the lab reads, 256 KiB), where 6000 connections each holding 250 KB
 * of an unfinished body once took it to 1.5 GB.
 */
export const EXPOSED_LIMITS: LabLimits = { connections: 512, perAddress: 64, bufferedBytes: 32 * 1024 * 1024 };

/** The largest request body the lab reads. */
const MAX_BODY = 256 * 1024;

/** Counts a lab's connections (over all its listeners) and the body bytes it holds, against its bounds. */
export class Bounds {
  private open = 0;
  private readonly byAddress = new Map<string, number>();
  /** Connections past a bound, by address and port (a TLS socket has its TCP socket's), with why. */
  private readonly refused = new Map<string, string>();
  private held = 0;

  constructor(readonly limits: LabLimits) {}

  /** Counts `server`'s connections as they open and close (for TLS, its TCP connections). */
  watch(server: Server): void {
    server.on("connection", (socket: Socket) => this.admit(socket));
  }

  private admit(socket: Socket): void {
    const address = socket.remoteAddress ?? "?";
    const key = `${address}|${socket.remotePort}`;
    const fromAddress = this.byAddress.get(address) ?? 0;
    const over =
      this.open >= this.limits.connections
        ? `the lab keeps at most ${this.limits.connections} connections at once`
        : fromAddress >= this.limits.perAddress
          ? `the lab keeps at most ${this.limits.perAddress} connections from one address at once`
          : undefined;
    if (over) {
      this.refused.set(key, over);
      socket.once("close", () => this.refused.delete(key));
      return;
    }
    this.open++;
    this.byAddress.set(address, fromAddress + 1);
    socket.once("close", () => {
      this.open--;
      const left = (this.byAddress.get(address) ?? 1) - 1;
      if (left > 0) this.byAddress.set(address, left);
      else this.byAddress.delete(address);
    });
  }

  /** Why the request's connection is past a bound, if it is. */
  refusal(req: IncomingMessage): string | undefined {
    return this.refused.get(`${req.socket.remoteAddress ?? "?"}|${req.socket.remotePort}`);
  }

  /** Takes `bytes` of the bytes the lab may hold, or takes nothing and says no. */
  take(bytes: number): boolean {
    if (this.held + bytes > this.limits.bufferedBytes) return false;
    this.held += bytes;
    return true;
  }

  /** Gives back `bytes` taken. */
  giveBack(bytes: number): void {
    this.held -= bytes;
  }
}

/** Why a request is answered without being handled: its body is too large (413), or a bound is reached (503). */
interface Refusal {
  status: 413 | 503;
  why: string;
}

/** Wraps a request handler: the body read first, then the handler run in turn; `fail` answers a crash (500) or a refusal. */
type Queued = (
  run: (req: IncomingMessage, res: ServerResponse, body: string, raw: Buffer) => Promise<void>,
  fail: (res: ServerResponse, status: 413 | 500 | 503, why: string) => void,
) => (req: IncomingMessage, res: ServerResponse) => void;

/** The lab's one request queue: {@link Queued}, and a way to wait until it is empty. */
export type Serially = Queued & {
  /**
   * Resolves once every request taken so far has been handled: a lab that closes waits for it, so
   * a request its client gave up on still finishes (and writes what it issued) before the lab is
   * closed, never after, into the next lab's state.
   */
  drained(): Promise<void>;
};

/**
 * One queue for every listener of a lab: bodies are read side by side (a slow client holds up
 * nobody), then one request at a time, so that state changes (end entity NEW -> GENERATED, x509
 * records, EST's records) never interleave. With `bounds`, a request past one is refused with 503
 * and its connection closed, and the bytes of a body count until its request has been handled.
 */
export function serialQueue(bounds?: Bounds): Serially {
  let queue: Promise<unknown> = Promise.resolve();
  const serially: Queued = (run, fail) => (req, res) => {
    // The Date header from this very moment, not Node's copy of up to a second ago: the agent
    // measures its clock against it, and tests move the shared clock between two requests.
    res.sendDate = false;
    res.setHeader("date", new Date().toUTCString());
    const over = bounds?.refusal(req);
    if (over) return refuse(req, res, { status: 503, why: over }, fail);
    readBody(req, bounds).then(
      ({ raw, held }) => {
        queue = queue
          .then(() => run(req, res, raw.toString("utf8"), raw))
          .catch((err: unknown) => {
            if (!res.headersSent) fail(res, 500, "An unexpected error has occurred.");
            process.emitWarning(`lab: ${String(err)}`);
          })
          .finally(() => bounds?.giveBack(held));
      },
      (err: unknown) => {
        // Refused while read; or cut off (the request timeout): Node has answered 408 and closed.
        if (err instanceof RefusedBody && !res.headersSent) refuse(req, res, err.refusal, fail);
      },
    );
  };
  return Object.assign(serially, { drained: async () => void (await queue) });
}

/** Answers a refusal and closes the connection; what the client still sends is read and dropped, not held. */
function refuse(req: IncomingMessage, res: ServerResponse, refusal: Refusal, fail: Parameters<Queued>[1]): void {
  req.resume();
  res.setHeader("connection", "close");
  fail(res, refusal.status, refusal.why);
}

class RefusedBody extends Error {
  constructor(readonly refusal: Refusal) {
    super(refusal.why);
  }
}

/**
 * The request's body, and how many of its bytes were taken from `bounds` (the caller gives them
 * back once the request is handled); rejects with a {@link RefusedBody} past a limit, and gives
 * back what it took when the body is refused or the client goes away before it ends.
 */
function readBody(req: IncomingMessage, bounds?: Bounds): Promise<{ raw: Buffer; held: number }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      req.off("data", onData);
      bounds?.giveBack(size);
      chunks.length = 0;
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      if (size + chunk.length > MAX_BODY)
        return fail(new RefusedBody({ status: 413, why: "Request size limit exceeded" }));
      if (bounds && !bounds.take(chunk.length))
        return fail(
          new RefusedBody({
            status: 503,
            why: `the lab holds at most ${bounds.limits.bufferedBytes} bytes of requests at once`,
          }),
        );
      size += chunk.length;
      chunks.push(chunk);
    };
    req.on("data", onData);
    req.once("end", () => {
      settled = true;
      resolve({ raw: Buffer.concat(chunks), held: bounds === undefined ? 0 : size });
    });
    req.once("error", fail);
    req.once("close", () => fail(new Error("the client went away before its request's end")));
  });
}
