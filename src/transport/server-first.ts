/**
 * The server is checked before the client's certificate goes out. Node's TLS client checks the
 * server's certificate only once the handshake is over, and by then a client certificate has been
 * sent with a signature by its key (TLS 1.2 sends both in clear before the client's Finished): a
 * man in the middle with any certificate at all would receive them. A connection that presents a
 * client certificate therefore asks for the server's OCSP status (`requestOCSP`), whose callback
 * Node runs inside the handshake, right after the server's certificate and before the client's
 * flight: there OpenSSL's verdict on the chain (the one Node acts on later) and the name check are
 * read, and a server that fails either is dropped before anything of the client's key is written.
 */
import { type ConnectionOptions, checkServerIdentity, type TLSSocket } from "node:tls";

/** TLS options as tls.connect takes them: `requestOCSP` goes through to the socket (not in Node's typings of them). */
export type ClientTlsOptions = ConnectionOptions & { requestOCSP?: boolean };

/** The handle's check of the server's chain, as Node reads it after the handshake (not in Node's typings). */
type VerifyingHandle = { verifyError?: () => Error | null };

/** The code of the error when a Node without the handle's check would have to send the certificate unchecked. */
const UNCHECKABLE = "ERR_TLS_SERVER_UNCHECKED";

/** The TLS options of a connection that presents a client certificate: it asks for the status the check runs at. */
export function checkServerFirst(options: ConnectionOptions): ClientTlsOptions {
  const presents = options.cert !== undefined || options.pfx !== undefined || options.privateKeyEngine !== undefined;
  return presents && options.rejectUnauthorized !== false ? { ...options, requestOCSP: true } : options;
}

/**
 * Drops `socket` in its handshake when the server fails the checks Node would make after it, if
 * its options (see {@link checkServerFirst}) present a client certificate; returns the socket.
 */
export function guardClientCertificate<S extends TLSSocket>(socket: S, options: ClientTlsOptions): S {
  if (!options.requestOCSP || options.rejectUnauthorized === false) return socket;
  socket.on("OCSPResponse", () => {
    const failure = serverFailure(socket, options);
    if (failure) socket.destroy(failure);
  });
  return socket;
}

/** Why the server may not be sent the client's certificate: its chain, its name, or no way to tell. */
function serverFailure(socket: TLSSocket, options: ClientTlsOptions): Error | undefined {
  const handle = (socket as unknown as { _handle?: VerifyingHandle })._handle;
  if (typeof handle?.verifyError !== "function") {
    return Object.assign(
      new Error("the server's certificate could not be checked before the client certificate was sent"),
      { code: UNCHECKABLE },
    );
  }
  const chain = handle.verifyError();
  if (chain) return chain;
  // The name Node checks after the handshake (tls.js, onConnectSecure): the SNI name, else the host.
  const host = options.servername || options.host || "localhost";
  return (options.checkServerIdentity ?? checkServerIdentity)(host, socket.getPeerCertificate(true));
}
