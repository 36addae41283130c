import { connect, type Socket } from "node:net";
import { softwareCrypto } from "cert-retriever";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SECRETS } from "../../test/helpers/cli.js";
import { tempDir } from "../../test/helpers/lab.js";
import { type LabOptions, type RunningLab, startLab } from "../src/server.js";

/**
 * Beyond loopback the lab bounds what clients can make it hold: open connections, from one
 * address and in all, and request bytes buffered; past a bound it answers 503 (before, 6000
 * connections each holding 250 KB of an unfinished body took it to 1.5 GB). The bounds are set
 * here on 127.0.0.1, where the lab otherwise has none; clients come from other loopback
 * addresses (127.0.0.2, ...) to be told apart.
 */
const password = "limits-lab-password";
SECRETS.add(password);
const LIMITS = { connections: 4, perAddress: 2, bufferedBytes: 64 * 1024 };

/** A client on a connection of its own from `from`: it sends a POST /auth announcing `length` body bytes, and `sent` of them. */
interface Client {
  socket: Socket;
  /** The reply's first bytes (its status line), or a rejection if the connection closes or 5 s pass without one. */
  reply: Promise<string>;
  send(bytes: number): void;
}

function client(port: number, from: string, length: number, sent: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, localAddress: from });
    const reply = new Promise<string>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`no reply to ${from} within 5 s`)), 5_000);
      socket.once("data", (d: Buffer) => {
        clearTimeout(timer);
        ok(d.toString("latin1"));
      });
      socket.once("close", () => {
        clearTimeout(timer);
        fail(new Error(`${from}: closed without a reply`));
      });
    });
    reply.catch(() => undefined); // observed by the test when it asks
    const send = (bytes: number) => socket.write("x".repeat(bytes));
    socket.once("error", reject);
    socket.on("error", () => undefined); // a reset after the reply: the lab closed while bytes were still coming
    socket.once("connect", () => {
      socket.write(
        `POST /auth HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`,
      );
      if (sent > 0) send(sent);
      resolve({ socket, reply, send });
    });
  });
}

const status = (reply: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1]);

/** A login, retried while the lab still counts connections that have just closed (each try is a whole request: no fixed wait). */
async function loginWhenFree(url: string, body = { username: "admin", passwd: password }): Promise<number> {
  for (let tries = 0; ; tries++) {
    const res = await fetch(`${url}/auth`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    await res.arrayBuffer();
    if (res.status !== 503 || tries === 200) return res.status;
  }
}

function labWith(more: Partial<LabOptions>): Promise<RunningLab> {
  return tempDir("cr-limits-").then((dir) =>
    startLab({
      dir,
      host: "127.0.0.1",
      port: 0,
      crypto: softwareCrypto(),
      certProfile: "cfree",
      autoRegister: false,
      adminPassword: password,
      tokenLifetime: 420,
      ...more,
    }),
  );
}

describe("the lab's bounds on connections and buffered bytes", () => {
  let lab: RunningLab;
  let port: number;
  const open: Socket[] = [];
  beforeEach(async () => {
    lab = await labWith({ limits: LIMITS });
    port = Number(new URL(lab.url).port);
  });
  afterEach(async () => {
    for (const s of open.splice(0)) s.destroy();
    await lab.close();
  });
  const hold = async (from: string, length = 1000, sent = 10) => {
    const c = await client(port, from, length, sent);
    open.push(c.socket);
    return c;
  };

  it("a third connection from one address is refused with 503, while another address still gets in; past four in all, 503 too", async () => {
    const [a1, a2] = [await hold("127.0.0.2"), await hold("127.0.0.2")];
    const a3 = await hold("127.0.0.2");
    expect(status(await a3.reply)).toBe(503);
    const b1 = await hold("127.0.0.3");
    const c1 = await hold("127.0.0.4");
    const d1 = await hold("127.0.0.5"); // a fifth connection held open
    expect(status(await d1.reply)).toBe(503);
    // The ones within the bounds are still being read: their bodies finish, and they are answered.
    for (const c of [a1, a2, b1, c1]) c.send(990);
    for (const c of [a1, a2, b1, c1]) expect(status(await c.reply)).toBe(400); // not JSON: dojot's "missing username"
    for (const s of open.splice(0)) s.destroy();
    expect(await loginWhenFree(lab.url)).toBe(200);
  });

  it("bodies held at once are bounded in all: one past the bound is refused with 503, the others go on", async () => {
    const big = await hold("127.0.0.6", 100 * 1024, 0);
    big.send(70 * 1024); // more than the 64 KiB the lab may hold
    expect(status(await big.reply)).toBe(503);
    const [x, y] = [await hold("127.0.0.7", 40 * 1024, 35 * 1024), await hold("127.0.0.8", 40 * 1024, 0)];
    y.send(35 * 1024); // 70 KiB in all: one of the two goes past the bound
    const first = await Promise.race([x.reply.then((r) => ({ who: x, r })), y.reply.then((r) => ({ who: y, r }))]);
    expect(status(first.r)).toBe(503);
    const other = first.who === x ? y : x;
    other.send(5 * 1024);
    expect(status(await other.reply)).toBe(400);
    // A client that goes away halfway through its body leaves nothing held.
    const gone = await hold("127.0.0.9", 60 * 1024, 40 * 1024);
    gone.socket.destroy();
    for (const s of open.splice(0)) s.destroy();
    // Everything held was let go: a body of 60 KiB fits again.
    expect(
      await loginWhenFree(lab.url, { username: "admin", passwd: password, pad: "p".repeat(60 * 1024) } as never),
    ).toBe(200);
  });
});

describe("when the bounds apply", () => {
  it("beyond loopback by default, on loopback only when asked", async () => {
    const exposed = await labWith({ host: "0.0.0.0" });
    const local = await labWith({});
    try {
      expect(exposed.limits).toEqual({
        connections: expect.any(Number),
        perAddress: expect.any(Number),
        bufferedBytes: expect.any(Number),
      });
      expect(local.limits).toBeUndefined();
    } finally {
      await Promise.all([exposed.close(), local.close()]);
    }
  });
});
