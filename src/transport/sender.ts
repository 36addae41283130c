/**
 * What both ways of sending a request have in common: Node's own client for a direct connection
 * (node-http.ts) and undici's through a proxy (proxy.ts). HttpClient sees only this.
 */
import type { ReplyBody } from "./bounded-body.js";

/** Timeouts of one request, in milliseconds. */
export interface HttpTimeouts {
  connect: number;
  headers: number;
  body: number;
}

/** One request as it goes on the wire. */
export interface SendRequest {
  url: URL;
  method: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
  signal: AbortSignal;
  timeouts: HttpTimeouts;
}

/** A reply whose body is still to be read. */
export interface RawReply {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: ReplyBody;
}

/** A way to send requests, holding its kept connections until closed. */
export interface Sender {
  request(req: SendRequest): Promise<RawReply>;
  /** Closes the kept connections so the process can exit. */
  close(): Promise<void>;
}

/** The error codes of the client's own timeouts: undici's names, so both ways classify alike. */
export const TIMEOUT_CODES = {
  connect: "UND_ERR_CONNECT_TIMEOUT",
  headers: "UND_ERR_HEADERS_TIMEOUT",
  body: "UND_ERR_BODY_TIMEOUT",
} as const;
