import { usageError } from "../errors.js";
import type { SubjectAltNames } from "../flows/build-csr.js";

/** How the identity goes into the CSR and which client id and topic `verify` uses. */
export const PROFILES = ["generic", "dojot-mosca", "dojot-vernemq", "amqtt", "airvantage"] as const;
/** One of {@link PROFILES}. */
export type ProfileName = (typeof PROFILES)[number];

/** The MQTT versions `verify` speaks; `auto` tries 5 and falls back to 3.1.1 when the broker refuses 5. */
export const MQTT_VERSIONS = ["5", "3.1.1", "auto"] as const;
/** One of {@link MQTT_VERSIONS}. */
export type MqttVersion = (typeof MQTT_VERSIONS)[number];

/** What is recorded beside the credentials, so that `verify` and `check` need not be told again. */
export interface ProfileRecord {
  profile: ProfileName;
  deviceId: string;
  tenant?: string;
  uriDomain?: string;
}

/** AirVantage's TLS 1.2 cipher suites (seed 001), in OpenSSL's names. */
const AIRVANTAGE_CIPHERS = [
  "AES128-SHA",
  "AES256-SHA",
  "ECDHE-ECDSA-AES128-SHA",
  "ECDHE-ECDSA-AES256-SHA",
  "ECDHE-RSA-AES128-SHA",
  "ECDHE-RSA-AES256-SHA",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
].join(":");

/**
 * iotagent-mosca's client id, `<tenant>:<device>`: it refuses a connection whose id does not match
 * (v0.4.3 index.js and v0.5.2 src/mosca.js, `parseClientIdOrTopic`: `/^(\w+):(\w+)$/`).
 */
const MOSCA_NAME = /^\w+$/;

/** A device id or tenant that iotagent-mosca's client id pattern cannot carry, refused before any key is made. */
function checkMoscaName(what: "device id" | "tenant", value: string): void {
  if (!MOSCA_NAME.test(value))
    throw usageError(
      `the ${what} '${value}' cannot be used with the dojot-mosca profile: iotagent-mosca takes only a client id '<tenant>:<device>' of letters, digits and '_' only`,
      what === "tenant" ? "moscaTenant" : "moscaDeviceId",
    );
}

/**
 * After login, before any key is made: the profile's rules that need the platform. For
 * dojot-mosca a tenant Mosca cannot parse is refused, and a note is returned when the platform's
 * certificate CN (`commonNames`, the names it may give) is never `<tenant>:<device>`, which
 * iotagent-mosca v0.5.2 requires (src/mosca.js `authenticate`: `subject.CN !== \`${ids.tenant}:${ids.device}\``)
 * while v0.4.3 (index.js) requires CN = device id.
 */
export function profilePlatformNote(
  profile: ProfileName,
  deviceId: string,
  tenant: string | undefined,
  commonNames: string[],
): string | undefined {
  if (profile !== "dojot-mosca") return undefined;
  if (tenant !== undefined) checkMoscaName("tenant", tenant);
  const wanted = `${tenant ?? "admin"}:${deviceId}`;
  if (commonNames.includes(wanted)) return undefined;
  return `this platform issues the certificate with CN '${commonNames[0] ?? deviceId}', which iotagent-mosca v0.4 accepts but v0.5 refuses (it wants CN '${wanted}'): against a dojot v0.5 broker, enroll through its x509-identity-mgmt API`;
}

/** Whether `digits` is a 15-digit IMEI whose last digit is its Luhn check digit. */
function isImei(digits: string): boolean {
  if (!/^\d{15}$/.test(digits)) return false;
  let sum = 0;
  for (let i = 0; i < 15; i++) {
    let d = Number(digits[14 - i]);
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/**
 * The names a profile adds to the CSR, after checking the device id against it. The CN is always
 * the device id (for AirVantage: the communication id, an IMEI or a serial number).
 */
export function profileSans(
  profile: ProfileName,
  deviceId: string,
  uriDomain: string | undefined,
  sans: SubjectAltNames,
): SubjectAltNames {
  switch (profile) {
    case "amqtt": {
      if (!uriDomain) throw usageError("the amqtt profile needs the broker's uri_domain", "uriDomain");
      if (!/^[A-Za-z0-9.-]+$/.test(uriDomain))
        throw usageError(`the URI domain '${uriDomain}' is not a domain name`, "uriDomain");
      // amqtt's CertificateAuthPlugin reads the first URI SAN: spiffe://<domain>/device/<id>.
      return {
        uri: [`spiffe://${uriDomain}/device/${deviceId}`, ...sans.uri],
        dns: [`${deviceId}.local`, ...sans.dns],
        ip: sans.ip,
      };
    }
    case "airvantage":
      if (/^\d{15}$/.test(deviceId) ? !isImei(deviceId) : !/^[A-Za-z0-9-]{4,64}$/.test(deviceId)) {
        throw usageError(
          `the device id '${deviceId}' is not an AirVantage communication id: an IMEI (15 digits with a valid Luhn check digit) or a serial number (4-64 letters, digits or '-')`,
          "airvantageId",
        );
      }
      return sans;
    case "dojot-mosca":
      checkMoscaName("device id", deviceId);
      return sans;
    default:
      return sans;
  }
}

/** What `verify` uses for a profile: MQTT version, client id, the topic it publishes to, TLS settings. */
export interface MqttIdentity {
  mqttVersion: MqttVersion;
  clientId: string;
  topic?: string;
  tls?: { minVersion: "TLSv1.2"; maxVersion: "TLSv1.2"; ciphers: string };
}

/** The MQTT version, client id, topic and TLS settings `verify` uses for a profile. */
export function mqttIdentity(record: ProfileRecord): MqttIdentity {
  const { deviceId, tenant } = record;
  switch (record.profile) {
    case "dojot-mosca": // iotagent-mosca v0.4 and v0.5: Mosca speaks MQTT 3.1.1 only; client id <tenant>:<device>, topic /<tenant>/<device>/attrs
      return {
        mqttVersion: "3.1.1",
        clientId: `${tenant ?? "admin"}:${deviceId}`,
        topic: `/${tenant ?? "admin"}/${deviceId}/attrs`,
      };
    case "dojot-vernemq": // VerneMQ (dojot v0.5+) speaks MQTT 5 only where allowed_protocol_versions says so; identity <tenant>:<device>, topic without a leading slash
      return {
        mqttVersion: "auto",
        clientId: `${tenant ?? "admin"}:${deviceId}`,
        topic: `${tenant ?? "admin"}:${deviceId}/attrs`,
      };
    case "amqtt": // amqtt 0.11 speaks MQTT 3.1.1 only; the client id must be the device id of the URI SAN
      return { mqttVersion: "3.1.1", clientId: deviceId };
    case "airvantage": // CN = communication id = client id; data under <comm id>/messages/json
      return {
        mqttVersion: "auto",
        clientId: deviceId,
        topic: `${deviceId}/messages/json`,
        tls: { minVersion: "TLSv1.2", maxVersion: "TLSv1.2", ciphers: AIRVANTAGE_CIPHERS },
      };
    default:
      return { mqttVersion: "auto", clientId: deviceId };
  }
}
