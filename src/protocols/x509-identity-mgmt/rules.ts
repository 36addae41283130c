/** x509-identity-mgmt's rules on device ids, per release line, and how a refusal says which line answers. */
/** v0.5-v0.6 accept only this CN (the server then prefixes the tenant): `allowedAttrsConstraints` at v0.5.0. */
const X509_CN_RULE = /^[0-9A-Za-z ]{1,255}$/;
/** v0.7+ bind a certificate only to a device id of this form: `belongsTo.device` in `schemas/defs.json` at v0.7.0/v0.8.0. */
const X509_DEVICE_RULE = /^[0-9a-fA-F-]{5,36}$/;

/** The x509-identity-mgmt release line answering: v0.5-v0.6 or v0.7+ (they differ in rules and error shapes). */
export type X509Generation = "v0.5" | "v0.7";

/**
 * Why `deviceId` cannot work with x509-identity-mgmt, or undefined. v0.5-v0.6 put it in the CN
 * (letters, digits, spaces); v0.7+ bind the certificate to it (hex and '-', 5-36). Before the
 * generation is known, only an id that suits neither is refused.
 */
export function x509DeviceIdProblem(deviceId: string, generation?: X509Generation): string | undefined {
  const cn = X509_CN_RULE.test(deviceId);
  const bindable = X509_DEVICE_RULE.test(deviceId);
  if (generation === "v0.5" && !cn)
    return `the device id '${deviceId}' cannot be the CN dojot v0.5-v0.6 accept (letters, digits and spaces only)`;
  if (generation === "v0.7" && !bindable)
    return `the device id '${deviceId}' cannot be bound to its certificate on dojot v0.7+ (5-36 hex digits or '-')`;
  if (!generation && !cn && !bindable) {
    return `the device id '${deviceId}' suits no x509-identity-mgmt release (dojot v0.5-v0.6 take a CN of letters, digits and spaces; v0.7+ bind 5-36 hex digits or '-')`;
  }
  return undefined;
}
