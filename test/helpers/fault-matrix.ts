import { cp } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "vitest";
import type { FaultKind, FaultRoute } from "../../lab/src/faults.js";
import { type LabOptions, type RunningLab, setDevice, startLab } from "../../lab/src/server.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import { enrollCli, listFiles, snapshot } from "./enroll.js";
import { startTestLab, type TestLab, tempDir } from "./lab.js";
import { openssl } from "./tools.js";

/** One cell of the fault table: what the platform does wrong, and what the user must see. */
export interface Cell {
  route: FaultRoute;
  kind: FaultKind;
  /** How many requests are hit (absent: all of them). */
  times?: number;
  code: number;
  message: RegExp;
  extra?: string[];
}

const STEP = { auth: "authenticate", ca: "fetch-ca", sign: "submit-csr" } as const;
const EXIT = { auth: 10, ca: 11, sign: 13 } as const;

/**
 * Limits that keep each cell short: three attempts, one-second timeouts; and a P-256 key, as no
 * cell is about key types (the lab's `open` profile takes it, where dojot's CFREE takes RSA only).
 */
const FAST = ["--retries", "2", "--request-timeout", "1s", "--deadline", "20s", "--key-type", "ec-p256"];

/** The cells every route shares: transport and status faults, persistent and passing. */
export function commonCells(route: keyof typeof STEP): Cell[] {
  const step = STEP[route];
  const unreachable = new RegExp(
    `${step} failed: the platform at http://127\\.0\\.0\\.1:\\d+ could not be reached: .*\\(3 attempts\\)`,
  );
  const cells: Cell[] = [
    { route, kind: "refuse", code: 75, message: unreachable },
    { route, kind: "reset", code: 75, message: unreachable },
    {
      route,
      kind: "hang",
      code: 75,
      message: new RegExp(
        `${step} failed: .*could not be reached: the request timed out \\(no reply within 1 s\\) \\(3 attempts\\)`,
      ),
    },
    { route, kind: "truncated", code: 75, message: unreachable },
    {
      route,
      kind: "503",
      code: 75,
      message: new RegExp(
        `${step} failed: the platform at .* answered HTTP 503: name resolution failed \\(3 attempts\\)`,
      ),
    },
    {
      route,
      kind: "429",
      code: 75,
      message: new RegExp(`${step} failed: .*answered HTTP 429: API rate limit exceeded \\(3 attempts\\)`),
    },
    {
      route,
      kind: "500",
      code: EXIT[route],
      message: new RegExp(`${step} failed: .*HTTP 500: Problem connecting to database`),
    },
    {
      route,
      kind: "garbage",
      code: EXIT[route],
      message: new RegExp(
        `${step} failed: the platform's reply \\(HTTP 200\\) is not what the API promises: .*got \\d+ bytes that are not text`,
      ),
    },
    {
      route,
      kind: "oversized",
      code: EXIT[route],
      message: new RegExp(`${step} failed: the reply from 127\\.0\\.0\\.1:\\d+ is larger than 1048576 bytes`),
    },
  ];
  // A fault that happens once is retried away: the run succeeds and says it retried. Except that a
  // signing request that may have reached the platform is never repeated (EJBCA signs once).
  const maybeSent = ["refuse", "reset", "hang", "truncated"];
  for (const kind of ["refuse", "reset", "hang", "truncated", "503", "429"] as const) {
    if (route === "sign" && maybeSent.includes(kind)) {
      cells.push({
        route,
        kind,
        times: 1,
        code: 75,
        message: /submit-csr failed: .*; the request may have reached the platform, so it is not repeated/,
      });
    } else {
      cells.push({ route, kind, times: 1, code: 0, message: new RegExp(`retry: ${step} attempt 1 of 3 failed`) });
    }
  }
  if (route === "sign") {
    for (const cell of cells.filter((c) => maybeSent.includes(c.kind) && c.times === undefined)) {
      cell.message =
        /submit-csr failed: the platform at .* could not be reached: .*; the request may have reached the platform, so it is not repeated/;
    }
  }
  return cells;
}

/** A lab directory with a device whose valid credentials exist, to copy into each cell. */
export interface Fixture {
  lab: TestLab;
  base: string;
  deviceId: string;
}

/** Enrolls the victim device once against a fault-free lab. */
export async function makeFixture(): Promise<Fixture> {
  const lab = await startTestLab({ certProfile: "open" });
  await lab.addDevice("victim");
  const base = join(await tempDir(), "certs");
  const run = await enrollCli(lab.url, lab, "victim", base, ["--key-type", "ec-p256"]);
  expect(run.code, run.stderr).toBe(0);
  await lab.close(); // keep the directory: each cell serves it again with its faults
  return { lab, base, deviceId: "victim" };
}

/**
 * Runs one cell: serves the fixture's lab with the cell's faults, re-enrolls the victim with
 * --force over a copy of its credentials, and checks the exit code, the message and, for a
 * failure, that the credentials are byte for byte what they were.
 */
export async function runCell(fx: Fixture, cell: Cell): Promise<void> {
  await setDevice(fx.lab.dir, fx.deviceId, "reset");
  const out = join(await tempDir(), "certs");
  await cp(fx.base, out, { recursive: true, preserveTimestamps: true });
  const before = await snapshot(out);
  const lab = await serveFixture(fx, [{ route: cell.route, kind: cell.kind, times: cell.times }]);
  try {
    const run = await enrollCli(lab.url, fx.lab, fx.deviceId, out, [
      "--force",
      "--json",
      ...FAST,
      ...(cell.extra ?? []),
    ]);
    expect(run.stderr).toMatch(cell.message);
    expect(run.code, run.stderr).toBe(cell.code);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    if (cell.code === 0) {
      expect(JSON.parse(run.stdout).retries).toHaveLength(1);
      expect(await snapshot(out)).not.toEqual(before);
      expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "victim.crt"))).toMatch(/: OK/);
    } else {
      // The previous credentials, byte for byte; beside them only the journal of a CSR that may have
      // reached the platform, by which the next run resets the end entity (EJBCA-REST).
      const { [`${fx.deviceId}.issue.pending`]: journal, ...kept } = await snapshot(out);
      expect(kept).toEqual(before);
      expect(journal !== undefined, run.stderr).toBe(/the request may have reached the platform/.test(run.stderr));
      if (cell.code === 14 && cell.route === "sign")
        expect(run.stderr).toMatch(
          /; (certificate [0-9a-f]+ was issued to this run and not stored, so it was revoked on the platform|a certificate was issued to this run \(in a reply that could not be read\) and not stored); the device's end entity was reset to NEW on the platform, so the next run signs again/,
        );
    }
  } finally {
    await lab.close();
  }
  // A failure after the CSR went out (the sign route, or a certificate that fails validation): the
  // cause gone, the next run enrolls, so nothing the failure left on the platform stands in its way.
  if (cell.code === 0 || (cell.route !== "sign" && cell.code !== 14)) return;
  const fixed = await serveFixture(fx);
  try {
    const rerun = await enrollCli(fixed.url, fx.lab, fx.deviceId, out, ["--force", ...FAST]);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(await listFiles(out)).not.toContain(`${fx.deviceId}.issue.pending`);
  } finally {
    await fixed.close();
  }
}

/** Serves the fixture's lab directory again, with `faults` (none by default). */
export function serveFixture(fx: Fixture, faults: LabOptions["faults"] = []): Promise<RunningLab> {
  return startLab({
    dir: fx.lab.dir,
    host: "127.0.0.1",
    port: 0,
    crypto: softwareCrypto(),
    certProfile: "open",
    autoRegister: false,
    adminPassword: fx.lab.password,
    tokenLifetime: 420,
    faults,
  });
}
