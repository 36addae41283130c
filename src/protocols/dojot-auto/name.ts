/** The plug-in's canonical name, and its name for people (apart, so that they load without the client). */
export const DOJOT_AUTO = "auto";
export const DOJOT_AUTO_TITLE = "auto (EJBCA-REST or x509-identity-mgmt, detected from the replies)";
