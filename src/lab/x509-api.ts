import { createHash, createPublicKey } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import * as x509 from "../crypto/x509.js";
import { toPem } from "../crypto/keys.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { RSA_SHA256, type LabCa } from "./ca.js";
import { parseObject, send } from "./replies.js";
import { loadState, updateState } from "./state.js";

/** Which dojot API the lab serves. */
export type LabApi = "legacy" | "x509" | "both";
/** v0.5: CN rule, tenant prefix, no binding route; v0.7: subject passed through, binding by PATCH, devices checked. */
export type X509Rules = "v0.5" | "v0.7";

interface X509Context {
  opts: { dir: string; crypto: CryptoProvider };
  ca: LabCa;
  rules: X509Rules;
}

const DAY = 86_400_000;
const CSR_PATTERN = /^-----BEGIN CERTIFICATE REQUEST-----(\r\n|\r|\n)([0-9A-Za-z+/=]{1,64}(\r\n|\r|\n))+-----END CERTIFICATE REQUEST-----$/;

/** x509-identity-mgmt behind Kong (`/x509/v1/...`), with the rules of `ctx.rules` (protocol notes, section 5). */
export async function handleX509(req: IncomingMessage, res: ServerResponse, url: URL, body: string, ctx: X509Context, tenant: string): Promise<void> {
  const path = url.pathname.replace(/\/+$/, "");
  const fail = (status: number, message: string, detail?: unknown) =>
    send(res, status, ctx.rules === "v0.5" ? { message } : { error: message, ...(detail === undefined ? {} : { detail }) });
  if (req.method === "GET" && path === "/x509/v1/ca") {
    return send(res, 200, { certificateFingerprint: fingerprint(ctx.ca.cert.rawData), caPem: toPem(ctx.ca.cert.rawData, "CERTIFICATE").trimEnd() });
  }
  if (req.method === "POST" && path === "/x509/v1/certificates") return issue(res, body, ctx, tenant, fail);
  const one = /^\/x509\/v1\/certificates\/([0-9A-Fa-f:]+)$/.exec(path);
  if (one && ctx.rules === "v0.7") {
    const fp = one[1]!.replace(/:/g, "").toUpperCase();
    const record = (await loadState(ctx.opts.dir))!.certificates?.[fp];
    if (!record || record.tenant !== tenant) return fail(404, `No records found for the following parameters: ${JSON.stringify({ fingerprint: fp })}`);
    if (req.method === "GET") return send(res, 200, { fingerprint: fp, pem: record.pem, belongsTo: record.belongsTo, tenant });
    if (req.method === "PATCH") {
      const device = (parseObject(body)?.belongsTo as { device?: unknown } | undefined)?.device;
      if (typeof device !== "string" || !/^[0-9a-fA-F-]{5,36}$/.test(device)) {
        return fail(400, "Input data schema validation failure.", { schemaId: "http://www.dojot.com.br/schemas/change-owner", schemaErrors: [{ instancePath: "/belongsTo/device", message: "must match pattern \"^[0-9a-fA-F-]{5,36}$\"" }] });
      }
      const known = await updateState(ctx.opts.dir, (s) => {
        if (!s.devices[device]) return false;
        s.certificates![fp]!.belongsTo = { device };
        return true;
      });
      if (!known) return fail(400, `Device identifier '${device}' was not found for tenant '${tenant}'.`);
      res.writeHead(204).end();
      return;
    }
  }
  // Express's own answer to a route it does not have.
  const text = `<!DOCTYPE html><html><body><pre>Cannot ${req.method} ${url.pathname.replace("/x509", "/api")}</pre></body></html>`;
  res.writeHead(404, { "content-type": "text/html; charset=utf-8", "content-length": Buffer.byteLength(text) }).end(text);
}

async function issue(res: ServerResponse, body: string, ctx: X509Context, tenant: string, fail: (status: number, message: string, detail?: unknown) => void): Promise<void> {
  const input = parseObject(body);
  const csrText = input?.csr;
  // v0.5's pattern allows no line break after the END line; v0.7 allows one.
  const candidate = typeof csrText === "string" && ctx.rules === "v0.7" ? csrText.replace(/(\r\n|\r|\n)$/, "") : csrText;
  if (typeof candidate !== "string" || candidate.length > 65536 || !CSR_PATTERN.test(candidate)) {
    const error = { instancePath: "/csr", dataPath: ".csr", message: typeof csrText === "string" ? "must match pattern of a PEM certificate request" : "must have required property 'csr'" };
    return ctx.rules === "v0.5"
      ? send(res, 400, { "schema$id": "http://www.dojot.com.br/schemas/reg-or-gen-cert", schemaErrors: [error] })
      : fail(400, "Input data schema validation failure.", { schemaId: "http://www.dojot.com.br/schemas/reg-or-gen-cert", schemaErrors: [error] });
  }
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(candidate);
  } catch {
    return fail(400, "Can not parse ASN1 data structure from binary data");
  }
  if (!(await csr.verify(ctx.opts.crypto))) return fail(400, "The CSR signature is not valid.");
  const keyProblem = checkPublicKey(csr.publicKey);
  if (keyProblem) return fail(400, keyProblem);
  let subject: x509.JsonName;
  const names = csr.subjectName.toJSON();
  if (ctx.rules === "v0.5") {
    const found = names.flatMap((rdn) => Object.keys(rdn));
    if (found.some((k) => k !== "CN")) return fail(400, `Error checking SubjectDN allowed attributes in CSR. Allowed: [CN] Found: [${found.join(", ")}]`);
    const cn = csr.subjectName.getField("CN")[0];
    if (!cn) return fail(400, `Error checking SubjectDN mandatory attributes in CSR. Mandatory: [CN] Found: [${found.join(", ")}]`);
    if (!/^[0-9A-Za-z ]{1,255}$/.test(cn)) return fail(400, `Error checking SubjectDN 'CN' attribute in CSR. The value does not match the regular expression: ^[0-9A-Za-z ]{1,255}$ Found: ${cn}`);
    subject = [{ O: ["dojot IoT Platform"] }, { CN: [`${tenant}:${cn}`] }];
  } else {
    subject = [{ O: ["dojot IoT Platform"] }, ...names];
  }
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create(
    {
      subject,
      issuer: ctx.ca.cert.subjectName,
      publicKey: csr.publicKey,
      signingKey: ctx.ca.key,
      signingAlgorithm: RSA_SHA256,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 365 * DAY),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.keyAgreement, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
        await x509.AuthorityKeyIdentifierExtension.create(ctx.ca.cert.publicKey, false, ctx.opts.crypto),
      ],
    },
    ctx.opts.crypto,
  );
  const fp = fingerprint(cert.rawData);
  const pem = toPem(cert.rawData, "CERTIFICATE").trimEnd();
  await updateState(ctx.opts.dir, (s) => {
    s.certificates ??= {};
    s.certificates[fp.replace(/:/g, "")] = { tenant, pem, belongsTo: null };
  });
  return send(res, 201, { certificateFingerprint: fp, certificatePem: pem });
}

/** x509-identity-mgmt's checkPublicKey: RSA >= 2048 bits, or ECDSA on P-256, P-384 or P-521. */
function checkPublicKey(key: x509.PublicKey): string | undefined {
  const spki = createPublicKey({ key: Buffer.from(key.rawData), format: "der", type: "spki" });
  const details = spki.asymmetricKeyDetails ?? {};
  if (spki.asymmetricKeyType === "rsa") return (details.modulusLength ?? 0) < 2048 ? "The RSA public key length less than 2048 bits is not supported." : undefined;
  if (spki.asymmetricKeyType === "ec") {
    return ["prime256v1", "secp384r1", "secp521r1"].includes(details.namedCurve ?? "")
      ? undefined
      : "The elliptical curve used in the ECDSA public key algorithm is not supported. (Use the NIST-recommended curves: P-256, P-384 or P-521)";
  }
  return "The public key algorithm must be RSA or ECDSA. (Use RSA with a key of at least 2048 bits, or ECDSA with P-256, P-384 or P-521)";
}

/** SHA-256 of DER as uppercase hex pairs joined by colons, as the service returns it. */
function fingerprint(der: ArrayBuffer): string {
  return createHash("sha256").update(new Uint8Array(der)).digest("hex").toUpperCase().match(/../g)!.join(":");
}
