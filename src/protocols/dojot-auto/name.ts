/** The plug-in's canonical name (apart from the plug-in, so that the client can use it without a cycle). */
export const DOJOT_AUTO = "auto";
/** Its name for people. */
export const DOJOT_AUTO_TITLE = "auto (EJBCA-REST or x509-identity-mgmt, detected from the replies)";
