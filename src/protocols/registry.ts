/**
 * The protocols cert-retriever speaks: the only list of them. Adding a protocol is a folder with
 * its plug-in and one line here; the CLI's `--api` choices, its help and its hints come from it.
 */
import { usageError } from "../errors.js";
import { cmp } from "./cmp/index.js";
import { dojotAuto } from "./dojot-auto/index.js";
import { ejbcaRest } from "./ejbca-rest/index.js";
import { est } from "./est/index.js";
import { scep } from "./scep/index.js";
import type { ProtocolPlugin, ProtocolSettingSpec } from "./types.js";
import { x509IdentityMgmt } from "./x509-identity-mgmt/index.js";

/** Every protocol, in the order help lists them. */
export const PROTOCOLS: readonly ProtocolPlugin[] = [ejbcaRest, x509IdentityMgmt, dojotAuto, est, cmp, scep];

/** The protocol a run speaks when none is named. */
export const DEFAULT_PROTOCOL = dojotAuto.name;

/** Every name a protocol is known by: canonical names and aliases. */
export function protocolNames(): string[] {
  return PROTOCOLS.flatMap((p) => [p.name, ...p.aliases]);
}

/** The protocol known by `name` (canonical or alias), or undefined. */
export function findProtocol(name: string): ProtocolPlugin | undefined {
  return PROTOCOLS.find((p) => p.name === name || p.aliases.includes(name));
}

/** The protocol known by `name`; an unknown name is a usage error (`facts.field` protocol). */
export function protocolNamed(name: string): ProtocolPlugin {
  const found = findProtocol(name);
  if (!found) throw usageError(`unknown protocol '${name}' (known: ${protocolNames().join(", ")})`, "protocol");
  return found;
}

/** The settings the protocols declare, each once (plug-ins may share one). */
export function protocolSettings(): ProtocolSettingSpec[] {
  const specs = PROTOCOLS.flatMap((p) => p.settings ?? []);
  return specs.filter((s, i) => specs.findIndex((t) => t.name === s.name) === i);
}
