import { connect } from "node:tls";
import { type ClientTlsOptions, guardClientCertificate } from "./server-first.js";

/**
 * Under TLS 1.3 a server refuses a client certificate after the handshake; a client that writes
 * at once may meet a reset before it reads the alert, and learns only "ECONNRESET" or "other side
 * closed". A second handshake that writes nothing reads the alert: its error code, if any, says
 * why (e.g. ERR_SSL_TLSV1_ALERT_UNKNOWN_CA).
 */
export function probeTlsAlert(options: ClientTlsOptions, ms = 2_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    // A probe presents the client certificate too: to a server that passes the same checks only.
    const socket = guardClientCertificate(connect(options), options);
    const done = (code: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(code);
    };
    const timer = setTimeout(() => done(undefined), ms);
    socket.on("error", (e: NodeJS.ErrnoException) => done(e.code === undefined ? undefined : String(e.code)));
    socket.on("close", () => done(undefined));
    socket.on("data", () => undefined);
  });
}
