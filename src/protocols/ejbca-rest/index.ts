/** EJBCA-REST, dojot <= v0.4: the plug-in. */
import type { ProtocolPlugin } from "../types.js";
import { EJBCA_REST_HINTS } from "./hints.js";
import { EJBCA_REST, EJBCA_REST_TITLE } from "./name.js";
import { ENTITY_PASSWORD_FILE, entityPasswordOf } from "./settings.js";

/** dojot <= v0.4 through Kong: `POST /auth`, `GET /ca/<name>`, `POST /sign/<device>/pkcs10`. */
export const ejbcaRest: ProtocolPlugin = {
  name: EJBCA_REST,
  aliases: ["dojot-legacy"],
  title: EJBCA_REST_TITLE,
  summary: "EJBCA-REST, dojot <= v0.4",
  settings: [ENTITY_PASSWORD_FILE],
  hints: EJBCA_REST_HINTS,
  lacks: {
    register: {
      message: `${EJBCA_REST_TITLE} cannot register a certificate it did not issue; that needs x509-identity-mgmt (dojot v0.7+)`,
    },
  },
  async open(ctx) {
    const { EjbcaRestClient } = await import("./client.js");
    return new EjbcaRestClient({
      baseUrl: ctx.url,
      caName: ctx.caName,
      entityPassword: entityPasswordOf(ctx.options),
      http: ctx.http,
    });
  },
};
