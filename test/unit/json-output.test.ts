// One JSON shape for every command, on success and on failure: `ok`, `command`, then the result's
// fields (success) or `error` (failure), as docs/cli-output.schema.json says; every command's
// --json output is validated against that file, the one the package ships, and its exit code
// against the codes the command's --help lists.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setDevice } from "../../lab/src/server.js";
import { COMMAND_EXIT_CODES, EXIT_CODE_MEANINGS, type TableCommand } from "../../src/cli/exit-codes.js";
import { REASONS } from "../../src/errors.js";
import { type MoscaBroker, startMoscaBroker } from "../helpers/aedes.js";
import { type CliRun, runCli, SECRETS } from "../helpers/cli.js";
import { enrollCli } from "../helpers/enroll.js";
import { type FactoryPki, makeFactoryPki } from "../helpers/factory-pki.js";
import { validate } from "../helpers/json-schema.js";
import { callLab, type LabWithJwt, startLabWithJwt, startTestLab, type TestLab, tempDir } from "../helpers/lab.js";

const SCHEMA_FILE = join(import.meta.dirname, "..", "..", "docs", "cli-output.schema.json");
const schema = JSON.parse(readFileSync(SCHEMA_FILE, "utf8")) as Record<string, unknown>;
const defs = schema.$defs as Record<string, { properties: Record<string, { enum?: unknown[]; properties?: never }> }>;

const x509Password = "json-output-x509-password";
SECRETS.add(x509Password);

let lab: TestLab;
let broker: MoscaBroker;
let x509: LabWithJwt;
let pki: FactoryPki;
beforeAll(async () => {
  lab = await startTestLab({ certProfile: "open", autoRegister: true });
  broker = await startMoscaBroker(lab.dir);
  x509 = await startLabWithJwt(x509Password);
  pki = makeFactoryPki(await tempDir("cr-factory-"));
  expect(await callLab(x509, "POST", "/x509/v1/trusted-cas", { caPem: pki.rootPem })).toMatchObject({ status: 201 });
  await setDevice(x509.dir, "a1b2c3", "add");
});
afterAll(async () => {
  await broker?.stop();
  await lab?.stop();
  await x509?.close();
});

/**
 * The run's stdout as one JSON object the schema accepts, whose `ok`, `command` and exit code
 * agree with the process's, the code one that the command's --help lists.
 */
function checked(command: string, run: CliRun): Record<string, unknown> {
  const json = JSON.parse(run.stdout) as Record<string, unknown>;
  expect(validate(schema, json), run.stdout).toEqual([]);
  expect(json.command).toBe(command);
  const codes: readonly number[] = command === "check" ? [0, 1, 255] : COMMAND_EXIT_CODES[command as TableCommand];
  expect(codes, `${command} returned ${run.code}, which its --help does not list`).toContain(run.code);
  const ok = run.code === 0 || (command === "check" && run.code === 1);
  expect(json.ok, run.stderr).toBe(ok);
  if (!ok) expect((json.error as { exitCode: number }).exitCode).toBe(run.code);
  return json;
}

const enrollJson = (id: string, out: string, more: string[] = []) =>
  enrollCli(lab.url, lab, id, out, ["--key-type", "ec-p256", "--profile", "dojot-mosca", "--json", ...more]);

describe("every command's --json output is one object of the shipped schema, on success and on failure", () => {
  it("enroll, enroll again, enroll --dry-run, and a refused password: ok, command, the result's fields at the top level", async () => {
    const out = join(await tempDir(), "certs");
    const enrolled = checked("enroll", await enrollJson("js1", out));
    expect(enrolled).toMatchObject({ ok: true, command: "enroll", status: "enrolled", deviceId: "js1" });
    expect(checked("enroll", await enrollJson("js1", out))).toMatchObject({ status: "already-enrolled" });
    const planned = checked("enroll", await enrollJson("js1", out, ["--dry-run", "--force"]));
    expect(planned).toMatchObject({ status: "dry-run", action: "enroll" });
    const refused = await enrollCli(lab.url, { password: "wrong" }, "js1", join(await tempDir(), "o"), ["--json"]);
    expect(checked("enroll", refused)).toMatchObject({
      ok: false,
      command: "enroll",
      error: { step: "authenticate", reason: "auth-refused", exitCode: 10 },
    });
  });

  it("check (needed, not needed, an error), status and export (success and failure)", async () => {
    const out = join(await tempDir(), "certs");
    const check = (...more: string[]) => runCli(["check", "--device-id", "js2", "--out", out, "--json", ...more]);
    expect(checked("check", await check())).toMatchObject({ needed: true, state: "missing" });
    expect((await enrollJson("js2", out)).code).toBe(0);
    expect(checked("check", await check())).toMatchObject({ needed: false, revocation: "unknown" });
    expect(checked("check", await check("--renew-before", "soon"))).toMatchObject({
      error: { reason: "usage", exitCode: 255 },
    });
    const status = (id: string) => runCli(["status", "--device-id", id, "--out", out, "--json"]);
    expect(checked("status", await status("js2"))).toMatchObject({ deviceId: "js2", validity: "valid" });
    expect(checked("status", await status("js0"))).toMatchObject({ error: { reason: "not-enrolled" } });
    const to = join(await tempDir(), "copies");
    const exported = await runCli(["export", "--device-id", "js2", "--out", out, "--to", to, "--json"]);
    expect(checked("export", exported)).toMatchObject({ files: { key: join(to, "js2.key") } });
    const der = await runCli(["export", "--device-id", "js2", "--out", out, "--to", `${to}-der`, "--format", "der"]);
    expect(der.code, der.stderr).toBe(0);
    expect(checked("export", await runCli(["export", "--device-id", "js2", "--json"]))).toMatchObject({
      error: { reason: "usage", exitCode: 2 },
    });
  });

  it("verify (the broker took the identity; no credentials), login (a token; a wrong password)", async () => {
    const out = join(await tempDir(), "certs");
    expect((await enrollJson("js3", out)).code).toBe(0);
    const verify = (id: string) =>
      runCli(["verify", "--broker", broker.url, "--device-id", id, "--out", out, "--broker-timeout", "5s", "--json"]);
    expect(checked("verify", await verify("js3"))).toMatchObject({ deviceId: "js3", stages: expect.any(Array) });
    expect(checked("verify", await verify("js9"))).toMatchObject({ error: { step: "verify", exitCode: 16 } });
    const loginJson = (password: string) =>
      runCli(
        [
          ...["login", "--platform", lab.url, "--username", "admin", "--password-stdin"],
          ...["--token-file", join(out, "tok"), "--json"],
        ],
        { input: `${password}\n` },
      );
    expect(checked("login", await loginJson(lab.password))).toMatchObject({ username: "admin" });
    expect(checked("login", await loginJson("wrong"))).toMatchObject({
      error: { step: "authenticate", reason: "auth-refused", exitCode: 10 },
    });
  });

  it("register (a certificate the platform now holds; a platform that cannot register)", async () => {
    const chain = pki.bundle("chain-a1b2c3.pem", pki.read(pki.issue("dev-a1b2c3")), pki.intPem, pki.rootPem);
    const register = (url: string, password: string) =>
      runCli(
        [
          "register",
          ...["--platform", url, "--device-id", "a1b2c3", "--cert-chain", chain],
          ...["--username", "admin", "--password-stdin", "--json"],
        ],
        { input: `${password}\n` },
      );
    expect(checked("register", await register(x509.url, x509Password))).toMatchObject({ status: "registered" });
    expect(checked("register", await register(lab.url, lab.password))).toMatchObject({
      error: { reason: "not-supported", exitCode: 17 },
    });
  });

  it("usage errors found by the parser: the command named, or null when there is none", async () => {
    expect(checked("status", await runCli(["status", "--bogus", "--json"]))).toMatchObject({
      error: { reason: "usage", message: "unknown option '--bogus'" },
    });
    const unknown = await runCli(["frobnicate", "--json"]);
    expect(unknown.code).toBe(2);
    const json = JSON.parse(unknown.stdout);
    expect(validate(schema, json)).toEqual([]);
    expect(json).toMatchObject({ ok: false, command: null, error: { reason: "usage", exitCode: 2 } });
  });
});

describe("the schema", () => {
  it("names every reason, every exit code and every command the code has", () => {
    const error = defs.failure!.properties.error!.properties as unknown as Record<string, { enum: unknown[] }>;
    expect(new Set(error.reason!.enum)).toEqual(new Set([...Object.keys(REASONS), "bug"]));
    expect(new Set(error.exitCode!.enum)).toEqual(new Set([...EXIT_CODE_MEANINGS.map(([c]) => c), 255]));
    expect(new Set(defs.failure!.properties.command!.enum)).toEqual(
      new Set([...Object.keys(COMMAND_EXIT_CODES), "check", null]),
    );
  });

  it("is strict: what a command does not print is refused, so a field added without the schema fails these tests", () => {
    const good = {
      ok: false,
      command: "verify",
      error: { step: "verify", reason: "not-enrolled", exitCode: 16, message: "verify failed: none" },
    };
    expect(validate(schema, good)).toEqual([]);
    const bad: Array<[string, unknown]> = [
      ["no ok", { command: good.command, error: good.error }],
      ["a field of its own", { ...good, extra: 1 }],
      ["an unknown reason", { ...good, error: { ...good.error, reason: "tired" } }],
      ["ok true with an error", { ...good, ok: true }],
      ["a result of another command", { ok: true, command: "verify", deviceId: "d", broker: "mqtts://b", stages: 3 }],
      ["a register result without its fields", { ok: true, command: "register", status: "registered" }],
    ];
    for (const [what, value] of bad) expect(validate(schema, value), what).not.toEqual([]);
  });

  it("is in the package (package.json's files holds docs/), and the JSON output page points to it", () => {
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, "..", "..", "package.json"), "utf8")) as {
      files: string[];
    };
    expect(pkg.files).toContain("docs");
    const page = readFileSync(join(import.meta.dirname, "..", "..", "docs", "json-output.md"), "utf8");
    expect(page).toContain("cli-output.schema.json");
  });
});
