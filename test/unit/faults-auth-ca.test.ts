import { afterAll, beforeAll, describe, it } from "vitest";
import { type Cell, commonCells, type Fixture, makeFixture, runCell } from "../helpers/fault-matrix.js";

let fx: Fixture;
beforeAll(async () => {
  fx = await makeFixture();
});
afterAll(async () => fx.lab.stop());

const cells: Cell[] = [
  ...commonCells("auth"),
  ...commonCells("ca"),
  {
    route: "ca",
    kind: "trailing-data",
    code: 11,
    message: /fetch-ca failed: the CA the platform sent has 8 bytes after the end of the certificate/,
  },
  {
    route: "ca",
    kind: "wrong-ca",
    code: 14,
    message:
      /validate failed: the certificate is not signed by the CA 'CN=IOTmidCA, O=EJBCA IOT, C=SE'.*nothing was written/,
  },
];

describe("fault table: /auth and /ca misbehave; the previous credentials survive every failure", () => {
  for (const cell of cells) {
    it(`${cell.route} ${cell.kind}${cell.times ? ` once` : ""} -> exit ${cell.code}`, () => runCell(fx, cell));
  }
});
