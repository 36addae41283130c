import { afterAll, beforeAll, describe, it } from "vitest";
import { type Cell, commonCells, type Fixture, makeFixture, runCell } from "../helpers/fault-matrix.js";

let fx: Fixture;
beforeAll(async () => {
  fx = await makeFixture();
});
afterAll(async () => fx.lab.stop());

const invalid = /validate failed: the certificate is valid from .* which does not include now .*; nothing was written/;
const cells: Cell[] = [
  ...commonCells("sign"),
  { route: "sign", kind: "wrong-ca", code: 14, message: /validate failed: the certificate is not signed by the CA/ },
  {
    route: "sign",
    kind: "other-key",
    code: 14,
    message: /validate failed: the certificate's public key is not the key generated for this device/,
  },
  { route: "sign", kind: "expired", code: 14, message: invalid },
  { route: "sign", kind: "not-yet-valid", code: 14, message: invalid },
  {
    route: "sign",
    kind: "trailing-data",
    code: 14,
    message: /validate failed: the certificate the platform sent has 8 bytes after the end of the certificate/,
  },
  {
    route: "sign",
    kind: "critical-extension",
    code: 14,
    message:
      /validate failed: the certificate has a critical extension TLS peers do not know \(1\.3\.6\.1\.4\.1\.32473\.1\), so they would refuse it; nothing was written/,
  },
  {
    route: "sign",
    kind: "skewed-clock",
    code: 75,
    message:
      /validate failed: this device's clock \(.*\) is 3 d behind the platform's, so the certificate, valid from .*, looks not yet valid here/,
  },
];

describe("fault table: /sign misbehaves; the previous credentials survive every failure", () => {
  for (const cell of cells) {
    it(`${cell.route} ${cell.kind}${cell.times ? ` once` : ""} -> exit ${cell.code}`, () => runCell(fx, cell));
  }
});
