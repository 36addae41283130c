/** `auto`: whichever of dojot's two APIs answers, detected from the replies. Shares the others' settings. */
import { ejbcaRest } from "../ejbca-rest/index.js";
import { entityPasswordOf } from "../ejbca-rest/settings.js";
import type { ProtocolPlugin } from "../types.js";
import { checkX509DeviceId } from "../x509-identity-mgmt/index.js";
import { DOJOT_AUTO, DOJOT_AUTO_TITLE } from "./name.js";

/** Either dojot API: EJBCA-REST (dojot <= v0.4) or x509-identity-mgmt (v0.5+), found at the fetch-ca step. */
export const dojotAuto: ProtocolPlugin = {
  name: DOJOT_AUTO,
  aliases: [],
  title: DOJOT_AUTO_TITLE,
  summary: "one of those two, detected from the replies",
  settings: ejbcaRest.settings,
  // Only x509-identity-mgmt registers: its rule on device ids applies.
  checkSettings: (settings) => (settings.purpose === "register" ? checkX509DeviceId(settings) : undefined),
  async open(ctx) {
    const [{ EjbcaRestClient }, { X509IdentityMgmtClient }, { DojotAutoClient }] = await Promise.all([
      import("../ejbca-rest/client.js"),
      import("../x509-identity-mgmt/client.js"),
      import("./client.js"),
    ]);
    const legacy = new EjbcaRestClient({
      baseUrl: ctx.url,
      caName: ctx.caName,
      entityPassword: entityPasswordOf(ctx.options),
      http: ctx.http,
    });
    return new DojotAutoClient(legacy, new X509IdentityMgmtClient({ baseUrl: ctx.url, http: ctx.http }));
  },
};
