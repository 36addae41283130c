import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";

/**
 * A man in the middle on 127.0.0.1: a TLS server that asks for a client certificate (and takes
 * any), behind a TCP front that reads every TLS record the client sends. It records what it could
 * have learnt: each client certificate that reached it (a completed handshake that carried one, a
 * TLS 1.2 Certificate or CertificateVerify in clear, or a TLS 1.3 client flight big enough to hold
 * a certificate), and each HTTP request with its Authorization header.
 */
export interface Mitm {
  url: string;
  /** `METHOD path` of each request, with ` authorization=<value>` when it carried one. */
  requests: string[];
  /** How a client certificate or its signature reached the MITM, one entry each time. */
  clientCertificates: string[];
  /** TLS handshakes that completed (whatever the client presented). */
  handshakes: number;
  close(): Promise<void>;
}

/** What the MITM answers: `/cacerts` with `cacerts` (base64 PKCS#7) if given, anything else 500. */
export interface MitmOptions {
  tls: { cert: string; key: string };
  /** The highest TLS version it speaks; a client may only complete TLS 1.2 before checking the server. */
  maxVersion: "TLSv1.2" | "TLSv1.3";
  cacerts?: () => Promise<string> | string;
}

const TLS_CHANGE_CIPHER_SPEC = 20;
const TLS_HANDSHAKE = 22;
const TLS_APPLICATION_DATA = 23;
const CERTIFICATE = 11;
const CERTIFICATE_VERIFY = 15;
/** An encrypted TLS 1.3 record longer than this holds more than an alert or an empty Certificate and Finished: a certificate. */
const FLIGHT_WITH_CERTIFICATE = 200;

/** Starts a MITM (see {@link Mitm}). */
export async function startMitm(opts: MitmOptions): Promise<Mitm> {
  const requests: string[] = [];
  const clientCertificates: string[] = [];
  let handshakes = 0;
  const sockets = new Set<Socket>();
  const server = createTlsServer({
    ...opts.tls,
    requestCert: true,
    rejectUnauthorized: false,
    maxVersion: opts.maxVersion,
  });
  server.on("secureConnection", (socket: TLSSocket) => {
    handshakes++;
    const peer = socket.getPeerCertificate();
    if (peer && Object.keys(peer).length > 0) clientCertificates.push(`handshake completed with ${peer.subject?.CN}`);
    serveHttp(socket, requests, opts.cacerts);
  });
  server.on("tlsClientError", () => undefined);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const tlsPort = (server.address() as AddressInfo).port;
  const front = createTcpServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    const upstream = connect(tlsPort, "127.0.0.1");
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
    client.on("end", () => upstream.end());
    upstream.pipe(client);
    const records = new ClientRecords(opts.maxVersion, clientCertificates);
    client.on("data", (chunk: Buffer) => {
      records.read(chunk);
      upstream.write(chunk);
    });
  });
  await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
  return {
    url: `https://127.0.0.1:${(front.address() as AddressInfo).port}/.well-known/est`,
    requests,
    clientCertificates,
    get handshakes() {
      return handshakes;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close();
        front.close(() => resolve());
      }),
  };
}

/** The TLS records a client sends on one connection, read for what would give its certificate away. */
class ClientRecords {
  private buffered = Buffer.alloc(0);
  private encrypted = 0;
  /** After the client's ChangeCipherSpec, its TLS 1.2 handshake records are encrypted. */
  private changedCipher = false;

  constructor(
    private readonly version: MitmOptions["maxVersion"],
    private readonly seen: string[],
  ) {}

  read(chunk: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= 5) {
      const length = this.buffered.readUInt16BE(3);
      if (this.buffered.length < 5 + length) return;
      const type = this.buffered[0];
      const body = this.buffered.subarray(5, 5 + length);
      if (type === TLS_CHANGE_CIPHER_SPEC) this.changedCipher = true;
      if (type === TLS_HANDSHAKE && this.version === "TLSv1.2" && !this.changedCipher) this.plainHandshake(body);
      // A TLS 1.3 client's first encrypted record is its Certificate (alone, or with the rest of its flight).
      if (
        type === TLS_APPLICATION_DATA &&
        this.version === "TLSv1.3" &&
        this.encrypted++ === 0 &&
        length > FLIGHT_WITH_CERTIFICATE
      )
        this.seen.push(`TLS 1.3 client Certificate record of ${length} bytes`);
      this.buffered = this.buffered.subarray(5 + length);
    }
  }

  /** TLS 1.2 handshake messages in clear: a non-empty Certificate, or a CertificateVerify. */
  private plainHandshake(body: Buffer): void {
    for (let at = 0; at + 4 <= body.length; ) {
      const type = body[at];
      const length = body.readUIntBE(at + 1, 3);
      if (type === CERTIFICATE && length > 3) this.seen.push("TLS 1.2 Certificate in clear");
      if (type === CERTIFICATE_VERIFY) this.seen.push("TLS 1.2 CertificateVerify (the key's signature)");
      at += 4 + length;
    }
  }
}

/** Answers HTTP/1.1 on a TLS socket: records each request, serves /cacerts if it has one, else 500. */
function serveHttp(socket: TLSSocket, requests: string[], cacerts: MitmOptions["cacerts"]): void {
  let text = "";
  socket.on("error", () => undefined);
  socket.on("data", async (chunk: Buffer) => {
    text += chunk.toString("latin1");
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) return;
    const head = text.slice(0, end).split("\r\n");
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end + 2))?.[1] ?? 0);
    if (text.length < end + 4 + length) return;
    text = text.slice(end + 4 + length);
    const [method, path] = head[0]!.split(" ");
    const auth = head.find((h) => /^authorization:/i.test(h))?.replace(/^authorization: */i, "");
    requests.push(`${method} ${path}${auth ? ` authorization=${auth}` : ""}`);
    const body = path?.endsWith("/cacerts") && cacerts ? await cacerts() : undefined;
    socket.write(
      body === undefined
        ? "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
        : `HTTP/1.1 200 OK\r\ncontent-type: application/pkcs7-mime\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
    );
  });
}
