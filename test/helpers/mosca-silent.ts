import type { Duplex } from "node:stream";

/**
 * How Mosca 2.8.3 meets a CONNECT at protocol level 5: its parser, mqtt-packet 3.5.1 (parser.js,
 * `_parseConnect`: `if(packet.protocolVersion != 3 && packet.protocolVersion != 4)` emits
 * "Invalid protocol version"; commit 50e38e4 "Bumped v3.5.1" of mqttjs/mqtt-packet), raises an
 * error, and until CONNECT completes Mosca listens for errors with a function that does nothing
 * (mosca v2.8.3 lib/client.js, `Client.prototype._setup`: `client.on("error", nop)`, replaced by
 * `handleError` only in `completeConnection`). So no CONNACK comes and the connection stays open.
 *
 * Reads the first bytes of `socket` up to the CONNECT's protocol level: at level 5 it swallows
 * everything the client sends and calls `onSwallowed`; otherwise it puts the bytes back and hands
 * the socket to `handle` (the broker).
 */
export function swallowMqtt5(socket: Duplex, handle: (socket: Duplex) => void, onSwallowed: () => void): void {
  let head = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    const level = connectLevel(head);
    if (level === undefined) return;
    socket.off("data", onData);
    if (level === 5) {
      socket.on("data", () => undefined); // read and dropped, as Mosca's parser does after its error
      onSwallowed();
      return;
    }
    socket.pause();
    socket.unshift(head);
    handle(socket);
  };
  socket.on("data", onData);
}

/** The protocol level byte of a CONNECT at the start of `bytes` (fixed header, remaining length, "MQTT"), once it has arrived. */
function connectLevel(bytes: Buffer): number | undefined {
  let at = 1;
  while (at < bytes.length && at < 5 && (bytes[at]! & 0x80) !== 0) at++;
  const levelAt = at + 1 + 2 + 4; // past the remaining length's last byte, the name's length and "MQTT"
  return bytes.length > levelAt ? bytes[levelAt] : undefined;
}
